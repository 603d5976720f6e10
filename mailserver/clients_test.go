package mailserver

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// need fails the test when a client it drives is missing: make test-deps installs them.
func need(t *testing.T, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s is required (make test-deps installs it)", b)
		}
	}
}

// swaks sends one message with swaks and returns its transcript.
func swaks(t *testing.T, addr string, args ...string) (string, error) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	base := []string{"--server", host, "--port", port, "--from", "bob@example.test", "--helo", "client.example.test",
		"--timeout", "20", "--header", "Subject: via swaks"}
	out, err := exec.CommandContext(t.Context(), "swaks", append(base, args...)...).CombinedOutput()
	return string(out), err
}

func TestSwaks(t *testing.T) {
	t.Parallel()
	need(t, "swaks")
	r := startServer(t, Options{MaxMessageBytes: 4000})
	inbox := func() int { return len(r.s.user(alice).inbox().Messages()) }

	// EHLO offers SIZE with the limit and SMTPUTF8; AUTH only after STARTTLS.
	out, err := swaks(t, r.smtp, "--to", alice, "--quit-after", "EHLO")
	if err != nil {
		t.Fatalf("swaks EHLO: %v\n%s", err, out)
	}
	for _, want := range []string{"250-SIZE 4000", "SMTPUTF8", "STARTTLS"} {
		if !strings.Contains(out, want) {
			t.Errorf("EHLO: no %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "AUTH") {
		t.Errorf("EHLO offers AUTH before STARTTLS:\n%s", out)
	}

	// The same mailbox named three ways in one transaction gets one copy.
	out, err = swaks(t, r.smtp, "--to", alice+",ALICE@BBSIM.TEST,postmaster@bbsim.test")
	if err != nil {
		t.Fatalf("swaks duplicate recipients: %v\n%s", err, out)
	}
	if n := inbox(); n != 1 {
		t.Fatalf("%d copies stored for one mailbox named three times, want 1\n%s", n, out)
	}

	// postmaster (RFC 5321 §4.5.1), with or without the domain, reaches the first user.
	out, err = swaks(t, r.smtp, "--to", "Postmaster@bbsim.test")
	if err != nil || inbox() != 2 {
		t.Fatalf("swaks to postmaster@: %v, %d messages\n%s", err, inbox(), out)
	}
	out, err = swaks(t, r.smtp, "--to", "Postmaster")
	if err != nil || inbox() != 3 {
		t.Fatalf("swaks to <Postmaster>: %v, %d messages\n%s", err, inbox(), out)
	}

	// AUTH PLAIN and LOGIN over STARTTLS with a --user account; a wrong password is 535
	// (each refusal takes swaks a few seconds: they run alongside).
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		out, err = swaks(t, r.smtp, "--to", alice, "--tls", "--auth", mech, "--auth-user", alice, "--auth-password", pass)
		if err != nil || !strings.Contains(out, "235 2.0.0 Authentication succeeded") {
			t.Errorf("swaks AUTH %s: %v\n%s", mech, err, out)
		}
		t.Run("wrong-password-"+mech, func(t *testing.T) {
			t.Parallel()
			out, err := swaks(t, r.smtp, "--to", alice, "--tls", "--auth", mech, "--auth-user", alice, "--auth-password", "wrong")
			if err == nil || !strings.Contains(out, "535 5.7.8 Authentication credentials invalid") {
				t.Errorf("swaks AUTH %s, wrong password: %v\n%s", mech, err, out)
			}
		})
	}
	if n := inbox(); n != 5 {
		t.Errorf("%d messages after two authenticated sends, want 5", n)
	}

	// A UTF-8 message, and one over the size limit (552, nothing stored).
	out, err = swaks(t, r.smtp, "--to", alice, "--body", "Café ouvert, 東京")
	if err != nil || inbox() != 6 {
		t.Errorf("swaks UTF-8 body: %v\n%s", err, out)
	}
	out, err = swaks(t, r.smtp, "--to", alice, "--body", strings.Repeat("too long\n", 500))
	if err == nil || !strings.Contains(out, "552 5.3.4") || inbox() != 6 {
		t.Errorf("swaks over the size limit: %v, %d messages\n%s", err, inbox(), out)
	}
}

// serverFlags returns the flags of INBOX's messages by UID, as the store has them.
func serverFlags(s *Server) map[uint32]string {
	out := map[uint32]string{}
	for _, m := range s.user(alice).inbox().Messages() {
		fs := make([]string, len(m.Flags))
		for i, f := range m.Flags {
			fs[i] = string(f)
		}
		out[uint32(m.UID)] = strings.Join(fs, " ")
	}
	return out
}

// maildirFiles finds the file of each message under a maildir's new and cur by UID (mbsync
// names files "…,U=<uid>[:2,<flags>]", offlineimap "…,U=<uid>,FMD5=…[:2,<flags>]").
func maildirFiles(t *testing.T, dir string) map[uint32]string {
	t.Helper()
	out := map[uint32]string{}
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			m := regexp.MustCompile(`,U=(\d+)(,[^:]*)?(:2,[A-Za-z]*)?$`).FindStringSubmatch(e.Name())
			if m == nil {
				t.Fatalf("maildir file %s has no UID", e.Name())
			}
			uid, _ := strconv.Atoi(m[1])
			out[uint32(uid)] = filepath.Join(dir, sub, e.Name())
		}
	}
	return out
}

// maildirFlags returns the maildir flags of each message by UID.
func maildirFlags(t *testing.T, dir string) map[uint32]string {
	t.Helper()
	out := map[uint32]string{}
	for uid, name := range maildirFiles(t, dir) {
		_, flags, _ := strings.Cut(filepath.Base(name), ":2,")
		out[uid] = flags
	}
	return out
}

// setMaildirFlags moves the maildir file of uid to cur with flags, as a mail reader does.
func setMaildirFlags(t *testing.T, dir string, uid uint32, flags string) {
	t.Helper()
	name, ok := maildirFiles(t, dir)[uid]
	if !ok {
		t.Fatalf("no maildir file for UID %d", uid)
	}
	base, _, _ := strings.Cut(filepath.Base(name), ":2,")
	if err := os.Rename(name, filepath.Join(dir, "cur", base+":2,"+flags)); err != nil {
		t.Fatal(err)
	}
}

// mbsync syncs INBOX both ways, flags included, and a second run finds nothing to change.
func TestMbsyncTwoWayFlags(t *testing.T) {
	t.Parallel()
	need(t, "mbsync")
	r := startServer(t, Options{})
	for i := 1; i <= 3; i++ {
		sendSMTP(t, r.smtp, alice, fmt.Sprintf("m%d", i))
	}
	dir := t.TempDir()
	host, port, _ := net.SplitHostPort(r.imap)
	conf := filepath.Join(dir, "mbsyncrc")
	os.WriteFile(conf, []byte(fmt.Sprintf(`IMAPAccount bbsim
Host %s
Port %s
User %s
Pass %s
SSLType None
AuthMechs LOGIN

IMAPStore far
Account bbsim

MaildirStore near
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel inbox
Far :far:
Near :near:
Patterns INBOX
Create Both
Expunge None
SyncState *
Sync All
`, host, port, alice, pass, dir, dir)), 0o600)
	run := func() string {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), "mbsync", "-c", conf, "-V", "-a")
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("mbsync: %v\n%s", err, out)
		}
		warnings := strings.ReplaceAll(string(out), "*** IMAP Warning *** Password is being sent in the clear", "")
		if strings.Contains(strings.ToLower(warnings), "unknown") || strings.Contains(warnings, "arning") {
			t.Errorf("mbsync warns:\n%s", out)
		}
		return string(out)
	}
	box := filepath.Join(dir, "INBOX")
	run()
	if got := maildirFlags(t, box); len(got) != 3 {
		t.Fatalf("after the first sync the maildir has %v, want 3 messages", got)
	}
	// Flags change on both sides: the server flags 1 and answers 2; here 2 is read and 3 flagged.
	ic := dialIMAPRaw(t, r.imap)
	ic.login()
	ic.ok("s SELECT INBOX")
	ic.ok(`a UID STORE 1 +FLAGS (\Flagged)`)
	ic.ok(`b UID STORE 2 +FLAGS (\Answered)`)
	ic.ok("c LOGOUT")
	waitNoSessions(t, r.s)
	setMaildirFlags(t, box, 2, "S")
	setMaildirFlags(t, box, 3, "F")
	out := run()
	wantNear := map[uint32]string{1: "F", 2: "RS", 3: "F"}
	wantFar := map[uint32]string{1: `\Flagged`, 2: `\Answered \Seen`, 3: `\Flagged`}
	if got := maildirFlags(t, box); !maps.Equal(got, wantNear) {
		t.Errorf("maildir flags after the second sync = %v, want %v\n%s", got, wantNear, out)
	}
	if got := serverFlags(r.s); !maps.Equal(got, wantFar) {
		t.Errorf("server flags after the second sync = %v, want %v\n%s", got, wantFar, out)
	}
	// Nothing changed since: a further run changes no flag on either side.
	out = run()
	if got := maildirFlags(t, box); !maps.Equal(got, wantNear) {
		t.Errorf("maildir flags changed on a sync with nothing to do: %v, want %v\n%s", got, wantNear, out)
	}
	if got := serverFlags(r.s); !maps.Equal(got, wantFar) {
		t.Errorf("server flags changed on a sync with nothing to do: %v, want %v\n%s", got, wantFar, out)
	}
}

// offlineimap brings the server's flags down and takes local ones up in one-shot syncs.
func TestOfflineimapFlags(t *testing.T) {
	t.Parallel()
	need(t, "offlineimap")
	r := startServer(t, Options{})
	for i := 1; i <= 2; i++ {
		sendSMTP(t, r.smtp, alice, fmt.Sprintf("m%d", i))
	}
	ic := dialIMAPRaw(t, r.imap)
	ic.login()
	ic.ok("s SELECT INBOX")
	ic.ok(`a UID STORE 1 +FLAGS (\Flagged \Seen)`)
	ic.ok("c LOGOUT")
	waitNoSessions(t, r.s)

	dir := t.TempDir()
	host, port, _ := net.SplitHostPort(r.imap)
	conf := filepath.Join(dir, "offlineimaprc")
	os.WriteFile(conf, []byte(fmt.Sprintf(`[general]
accounts = bbsim
metadata = %s/meta

[Account bbsim]
localrepository = near
remoterepository = far

[Repository near]
type = Maildir
localfolders = %s/mail

[Repository far]
type = IMAP
remotehost = %s
remoteport = %s
remoteuser = %s
remotepass = %s
ssl = no
starttls = no
folderfilter = lambda name: name == 'INBOX'
`, dir, dir, host, port, alice, pass)), 0o600)
	run := func() string {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), "offlineimap", "-c", conf, "-o", "-u", "basic")
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.Contains(string(out), "ERROR") {
			t.Fatalf("offlineimap: %v\n%s", err, out)
		}
		return string(out)
	}
	box := filepath.Join(dir, "mail", "INBOX")
	out := run()
	if got, want := maildirFlags(t, box), map[uint32]string{1: "FS", 2: ""}; !maps.Equal(got, want) {
		t.Fatalf("maildir flags after the first sync = %v, want %v\n%s", got, want, out)
	}
	setMaildirFlags(t, box, 2, "RS")
	out = run()
	if got, want := serverFlags(r.s), map[uint32]string{1: `\Flagged \Seen`, 2: `\Answered \Seen`}; !maps.Equal(got, want) {
		t.Fatalf("server flags after the second sync = %v, want %v\n%s", got, want, out)
	}
}

// fetchmailRC writes a fetchmail run-control file for the server and returns its path and
// the mbox its MDA appends to.
func fetchmailRC(t *testing.T, dir, proto, addr, options string) (rc, mbox string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	mbox = filepath.Join(dir, "mbox")
	rc = filepath.Join(dir, "fetchmailrc")
	// sslproto '' keeps to plain text: the server's certificate is self-signed.
	err = os.WriteFile(rc, []byte(fmt.Sprintf(`set no syslog
poll %s with proto %s port %s
  user "%s" there with password "%s" is "%s" here
  %s
  sslproto ''
  mda "cat >> %s"
`, host, proto, port, alice, pass, me.Username, options, mbox)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return rc, mbox
}

// fetchmailEnv keeps fetchmail's files (lock, UIDs seen) in dir.
func fetchmailEnv(dir string) []string {
	return append(os.Environ(), "HOME="+dir, "FETCHMAILHOME="+dir)
}

// fetchmail fetches over POP3 and IMAP, keeping or removing what it fetched, and with
// --idle fetches what arrives while it waits.
func TestFetchmail(t *testing.T) {
	t.Parallel()
	need(t, "fetchmail")
	for _, proto := range []string{"POP3", "IMAP"} {
		for _, keep := range []string{"keep", "nokeep"} {
			// One fetchmail at a time: as root its lock is machine-wide.
			t.Run(proto+"-"+keep, func(t *testing.T) {
				r := startServer(t, Options{})
				sendSMTP(t, r.smtp, alice, "m1")
				// Stored with bare LFs: POP3 announces the size of what it sends.
				deliverRaw(t, r.s, "From: bob@example.test\nSubject: m2\n\nLF only.\n")
				dir := t.TempDir()
				rc, mbox := fetchmailRC(t, dir, proto, r.imap, keep)
				if proto == "POP3" {
					rc, mbox = fetchmailRC(t, dir, proto, r.pop3, keep)
				}
				run := func() (string, int) {
					cmd := exec.CommandContext(t.Context(), "fetchmail", "-f", rc, "-v")
					cmd.Env = fetchmailEnv(dir)
					out, err := cmd.CombinedOutput()
					var ee *exec.ExitError
					if err != nil && !errors.As(err, &ee) {
						t.Fatal(err)
					}
					return string(out), cmd.ProcessState.ExitCode()
				}
				out, code := run()
				got, _ := os.ReadFile(mbox)
				if code != 0 || strings.Count(string(got), "Subject: m") != 2 || strings.Contains(out, "expected length") {
					t.Fatalf("fetchmail exit %d, fetched:\n%s\n%s", code, got, out)
				}
				left := len(r.s.user(alice).inbox().Messages())
				if want := map[string]int{"keep": 2, "nokeep": 0}[keep]; left != want {
					t.Fatalf("%d messages left on the server, want %d\n%s", left, want, out)
				}
				// A second run finds nothing new (exit 1), whether the mail was kept or not.
				out, code = run()
				got, _ = os.ReadFile(mbox)
				if code != 1 || strings.Count(string(got), "Subject: m") != 2 {
					t.Fatalf("second fetchmail run: exit %d, want 1 (no mail), fetched:\n%s\n%s", code, got, out)
				}
			})
		}
	}
	t.Run("IMAP-idle", func(t *testing.T) {
		r := startServer(t, Options{})
		dir := t.TempDir()
		rc, mbox := fetchmailRC(t, dir, "IMAP", r.imap, "nokeep")
		cmd := exec.CommandContext(t.Context(), "fetchmail", "-f", rc, "-v", "--idle")
		cmd.Env = fetchmailEnv(dir)
		var log strings.Builder
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		t.Cleanup(func() { cmd.Process.Kill(); <-done })
		waitIdling(t, r.s, 1)
		sendSMTP(t, r.smtp, alice, "while idling")
		deadline := time.Now().Add(15 * time.Second)
		for {
			got, _ := os.ReadFile(mbox)
			if strings.Contains(string(got), "Subject: while idling") && len(r.s.user(alice).inbox().Messages()) == 0 {
				break
			}
			select {
			case err := <-done:
				t.Fatalf("fetchmail ended: %v\n%s", err, log.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("the mail sent while fetchmail idled was not fetched; mbox:\n%s", got)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// asUnprivileged makes cmd run as nobody when the tests run as root (getmail refuses to
// deliver as root) and gives that user dir.
func asUnprivileged(t *testing.T, cmd *exec.Cmd, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Fatalf("no unprivileged user to run as: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// The test's temporary directories are private to root: let nobody pass through.
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	err = filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(path, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
}

// getmail's POP3 and IMAP retrievers fetch into a maildir, remember what they fetched, and
// remove it from the server when told to.
func TestGetmail(t *testing.T) {
	t.Parallel()
	need(t, "getmail")
	for _, tt := range []struct {
		retriever string
		delete    bool
	}{
		{"SimplePOP3Retriever", false},
		{"SimplePOP3Retriever", true},
		{"SimpleIMAPRetriever", false},
		{"SimpleIMAPRetriever", true},
	} {
		t.Run(fmt.Sprintf("%s-delete=%v", tt.retriever, tt.delete), func(t *testing.T) {
			t.Parallel()
			r := startServer(t, Options{})
			sendSMTP(t, r.smtp, alice, "m1")
			deliverRaw(t, r.s, "From: bob@example.test\nSubject: m2\n\nLF only.\n")
			addr := r.pop3
			extra := ""
			if tt.retriever == "SimpleIMAPRetriever" {
				addr, extra = r.imap, "mailboxes = (\"INBOX\",)\n"
			}
			host, port, _ := net.SplitHostPort(addr)
			dir := t.TempDir()
			maildir := filepath.Join(dir, "maildir")
			for _, sub := range []string{"new", "cur", "tmp"} {
				os.MkdirAll(filepath.Join(maildir, sub), 0o700)
			}
			os.WriteFile(filepath.Join(dir, "getmailrc"), []byte(fmt.Sprintf(`[retriever]
type = %s
server = %s
port = %s
username = %s
password = %s
%s
[destination]
type = Maildir
path = %s/

[options]
read_all = false
delete = %v
verbose = 2
`, tt.retriever, host, port, alice, pass, extra, maildir, tt.delete)), 0o600)
			run := func() string {
				cmd := exec.CommandContext(t.Context(), "getmail", "--getmaildir", dir, "--rcfile", "getmailrc")
				cmd.Env = append(os.Environ(), "HOME="+dir)
				asUnprivileged(t, cmd, dir)
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("getmail: %v\n%s", err, out)
				}
				return string(out)
			}
			out := run()
			ents, _ := os.ReadDir(filepath.Join(maildir, "new"))
			if len(ents) != 2 || !strings.Contains(out, "2 messages") {
				t.Fatalf("getmail fetched %d messages, want 2\n%s", len(ents), out)
			}
			left, want := len(r.s.user(alice).inbox().Messages()), 2
			if tt.delete {
				want = 0
			}
			if left != want {
				t.Fatalf("%d messages left on the server, want %d\n%s", left, want, out)
			}
			out = run()
			ents, _ = os.ReadDir(filepath.Join(maildir, "new"))
			if len(ents) != 2 || !strings.Contains(out, "0 messages") {
				t.Fatalf("a second getmail run fetched again: %d in the maildir\n%s", len(ents), out)
			}
		})
	}
}
