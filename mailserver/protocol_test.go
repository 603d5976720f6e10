package mailserver

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// curl speaks each protocol as an outside client.
func TestCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required (make test-deps installs it)")
	}
	r := startServer(t, Options{Locking: LockShared})
	cmd := exec.Command("curl", "-sS", "smtp://"+r.smtp, "--mail-from", "bob@example.test", "--mail-rcpt", alice, "-T", "-")
	cmd.Stdin = strings.NewReader("From: bob@example.test\r\nTo: alice@bbsim.test\r\nSubject: via curl\r\n\r\nHello from curl.\r\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("curl smtp: %v %s", err, out)
	}
	out, err := exec.Command("curl", "-sS", "-u", alice+":"+pass, "imap://"+r.imap+"/INBOX;UID=1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Hello from curl.") {
		t.Fatalf("curl imap: %v %s", err, out)
	}
	out, err = exec.Command("curl", "-sS", "-u", alice+":"+pass, "pop3://"+r.pop3+"/1").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Subject: via curl") {
		t.Fatalf("curl pop3: %v %s", err, out)
	}
	out, err = exec.Command("curl", "-sS", "-u", alice+":"+pass, "pop3://"+r.pop3+"/").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "1 ") {
		t.Fatalf("curl pop3 LIST: %v %s", err, out)
	}
	// A wrong password is refused with the RFC 2449 code.
	out, _ = exec.Command("curl", "-sS", "-v", "-u", alice+":wrong", "pop3://"+r.pop3+"/").CombinedOutput()
	if !strings.Contains(string(out), "-ERR [AUTH]") {
		t.Fatalf("curl pop3 wrong password: %s", out)
	}
}

// pop3 is a line-level POP3 client for protocol details.
type pop3 struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dialPOP3(t *testing.T, addr string) *pop3 { return dialPOP3B(t, addr) }

func dialPOP3B(t testing.TB, addr string) *pop3 {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	p := &pop3{t: t, c: c, r: bufio.NewReader(c)}
	if g := p.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	return p
}

func (p *pop3) line() string {
	l, err := p.r.ReadString('\n')
	if err != nil {
		p.t.Fatalf("pop3 read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

func (p *pop3) cmd(s string) string {
	fmt.Fprintf(p.c, "%s\r\n", s)
	return p.line()
}

func (p *pop3) multi() []string {
	var out []string
	for {
		l := p.line()
		if l == "." {
			return out
		}
		out = append(out, strings.TrimPrefix(l, "."))
	}
}

func TestPOP3Session(t *testing.T) {
	r := startServer(t, Options{Locking: LockShared})
	for i := 1; i <= 3; i++ {
		sendSMTP(t, r.smtp, alice, fmt.Sprintf("m%d", i))
	}
	id := startIdler(t, r.imap)
	p := dialPOP3(t, r.pop3)
	steps := []struct{ cmd, want string }{
		{"STAT", "-ERR Command not allowed in this state"},
		{"PASS x", "-ERR USER first"},
		{"BOGUS", "-ERR Unknown command BOGUS"},
		{"X", "-ERR Unknown command X"},
		{"USER " + alice, "+OK"},
		{"PASS " + pass, "+OK Logged in, 3 messages"},
		{"STAT", "+OK 3 "},
		{"LIST 2", "+OK 2 "},
		{"LIST 9", "-ERR No such message"},
		{"RETR x", "-ERR No such message"},
		{"DELE 2", "+OK Message 2 deleted"},
		{"DELE 2", "-ERR Message 2 already deleted"},
		{"RETR 2", "-ERR Message 2 already deleted"},
		{"STAT", "+OK 2 "},
		{"RSET", "+OK"},
		{"STAT", "+OK 3 "},
		{"DELE 1", "+OK"},
		{"NOOP", "+OK"},
		{"USER x", "-ERR Command not allowed in this state"},
		{strings.Repeat("A", 2000), "-ERR Line too long"},
		{"NOOP", "+OK"},
	}
	for _, s := range steps {
		if got := p.cmd(s.cmd); !strings.HasPrefix(got, s.want) {
			t.Fatalf("%.20s: %q, want %q", s.cmd, got, s.want)
		}
	}
	if got := p.cmd("UIDL"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("UIDL: %q", got)
	}
	if u := p.multi(); len(u) != 2 || !strings.HasPrefix(u[0], "2 ") {
		t.Fatalf("UIDL listing %q", u)
	}
	if got := p.cmd("TOP 3 0"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("TOP: %q", got)
	}
	top := p.multi()
	if strings.Join(top, "\n") == "" || strings.Contains(strings.Join(top, "\n"), "Hello.") {
		t.Fatalf("TOP 3 0 returned the body: %q", top)
	}
	if got := p.cmd("CAPA"); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("CAPA %q", got)
	}
	if caps := strings.Join(p.multi(), " "); !strings.Contains(caps, "UIDL") || !strings.Contains(caps, "RESP-CODES") {
		t.Fatalf("CAPA %q", caps)
	}
	if got := p.cmd("QUIT"); !strings.HasPrefix(got, "+OK Bye, 1 messages deleted") {
		t.Fatalf("QUIT %q", got)
	}
	// The deletion shows at the idling IMAP session as EXPUNGE, and the count drops.
	select {
	case seq := <-id.expunged:
		if seq != 1 {
			t.Fatalf("EXPUNGE %d, want 1", seq)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no EXPUNGE at the idler")
	}
	c, err := imapclient.DialInsecure(r.imap, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Login(alice, pass).Wait()
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 2 {
		t.Fatalf("after POP3 DELE: %v messages, %v", sel, err)
	}
}

func TestNoIdleHidesIDLE(t *testing.T) {
	r := startServer(t, Options{NoIdle: true})
	c, err := imapclient.DialInsecure(r.imap, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(alice, pass).Wait(); err != nil {
		t.Fatal(err)
	}
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if caps.Has("IDLE") {
		t.Fatalf("IDLE advertised with NoIdle: %v", caps)
	}
	if !caps.Has("IMAP4rev1") {
		t.Fatalf("capabilities mangled: %v", caps)
	}
}

func TestConnectionLimit(t *testing.T) {
	r := startServer(t, Options{MaxConnectionsPerUser: 1, Locking: LockShared})
	startIdler(t, r.imap)
	c, err := imapclient.DialInsecure(r.imap, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Login(alice, pass).Wait()
	if err == nil || !strings.Contains(err.Error(), "UNAVAILABLE") || !strings.Contains(err.Error(), "mail_max_userip_connections=1") {
		t.Fatalf("second login: %v", err)
	}
	// POP3 is counted separately, as on Dovecot.
	if got := popLogin(t, r.pop3); !strings.HasPrefix(got, "+OK") {
		t.Fatalf("POP3 under the IMAP limit: %q", got)
	}
}

// python3's imaplib: login, select, search, fetch and store, as an outside IMAP client.
func TestPythonIMAP(t *testing.T) {
	r := startServer(t, Options{})
	sendSMTP(t, r.smtp, alice, "for imaplib")
	host, port, _ := net.SplitHostPort(r.imap)
	out, err := python(t, `
import imaplib, sys
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
m.login(sys.argv[3], sys.argv[4])
typ, data = m.select("INBOX")
print("select", typ, data[0].decode())
typ, data = m.search(None, "ALL")
print("search", data[0].decode())
typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
print("fetch", data[0][1].decode().strip())
typ, data = m.store("1", "+FLAGS", "\\Seen")
print("store", typ)
m.logout()
`, host, port, alice, pass)
	if err != nil {
		t.Fatalf("imaplib: %v\n%s", err, out)
	}
	for _, want := range []string{"select OK 1", "search 1", "fetch Subject: for imaplib", "store OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("imaplib output lacks %q:\n%s", want, out)
		}
	}
}

// A message stored with bare LFs goes out of POP3 as CRLF lines, and every octet count
// (the +OK of PASS, STAT, LIST, RETR) is of what is sent.
func TestPOP3BareLFMessage(t *testing.T) {
	t.Parallel()
	r := startServer(t, Options{})
	msg := "From: bob@example.test\nSubject: bare\n\nline one\r\nline two\nlast line without an end"
	const sent = "From: bob@example.test\r\nSubject: bare\r\n\r\nline one\r\nline two\r\nlast line without an end\r\n"
	deliverRaw(t, r.s, msg)
	p := dialPOP3(t, r.pop3)
	p.cmd("USER " + alice)
	want := len(sent)
	if got := p.cmd("PASS " + pass); got != fmt.Sprintf("+OK Logged in, 1 messages (%d octets)", want) {
		t.Errorf("PASS = %q, want %d octets", got, want)
	}
	for cmd, wantLine := range map[string]string{
		"STAT":   fmt.Sprintf("+OK 1 %d", want),
		"LIST 1": fmt.Sprintf("+OK 1 %d", want),
		"RETR 1": fmt.Sprintf("+OK %d octets", want),
	} {
		if got := p.cmd(cmd); got != wantLine {
			t.Errorf("%s = %q, want %q", cmd, got, wantLine)
		}
		if cmd != "RETR 1" {
			continue
		}
		var body strings.Builder
		for {
			l, err := p.r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if l == ".\r\n" {
				break
			}
			body.WriteString(l)
		}
		if body.String() != sent {
			t.Errorf("RETR sent %q, want %q", body.String(), sent)
		}
	}
}

// A message without a Date header shows in the webmail with the time it arrived.
func TestWebmailDateOfUndatedMail(t *testing.T) {
	t.Parallel()
	r := startServer(t, Options{})
	before := time.Now().Add(-time.Second)
	deliverRaw(t, r.s, "From: bob@example.test\r\nSubject: undated\r\n\r\nNo date here.\r\n")
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	webmailSignIn(t, hc, r.webmail)
	resp, err := hc.Get("http://" + r.webmail + "/message/1")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /message/1: %s\n%s", resp.Status, page)
	}
	if strings.Contains(string(page), "0001") {
		t.Fatalf("the page shows the zero date:\n%s", page)
	}
	m := regexp.MustCompile(`<td>Date</td><td>([^<]*) \(received\)</td>`).FindStringSubmatch(string(page))
	if m == nil {
		t.Fatalf("no received date on the page:\n%s", page)
	}
	got, err := time.Parse(time.RFC1123Z, html.UnescapeString(m[1]))
	if err != nil || got.Before(before.Truncate(time.Second)) || got.After(time.Now().Add(time.Second)) {
		t.Fatalf("Date %q (%v), want the arrival time", m[1], err)
	}
}

// MAIL FROM parameters swaks cannot send, over a raw connection: the exact answers.
func TestSMTPMailParameters(t *testing.T) {
	t.Parallel()
	r := startServer(t, Options{})
	c, err := net.Dial("tcp", r.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	reply := func() string {
		var last string
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("smtp read: %v", err)
			}
			last = strings.TrimRight(l, "\r\n")
			if len(last) < 4 || last[3] != '-' {
				return last
			}
		}
	}
	reply() // greeting
	tests := []struct{ cmd, want string }{
		{"EHLO client.example.test", "250 LIMITS RCPTMAX=100"},
		{"MAIL FROM:<bob@example.test> SIZE=99999999999", "552 5.3.4 Max message size exceeded"},
		{"MAIL FROM:<bob@example.test> SIZE=184467440737095516160", "552 5.3.4 Max message size exceeded"},
		{"MAIL FROM:<bob@example.test> SIZE=12x", "501 5.5.4 Unable to parse SIZE as an integer"},
		{"MAIL FROM:<bøb@example.test> SMTPUTF8 SIZE=100", "250 2.0.0 Roger, accepting mail from <bøb@example.test>"},
		{"RCPT TO:<PostMaster>", "250 2.0.0 I'll make sure <postmaster> gets this"},
		{"RCPT TO:<nobody@bbsim.test>", "550 5.1.1 No such user here: nobody@bbsim.test"},
	}
	for _, tt := range tests {
		fmt.Fprintf(c, "%s\r\n", tt.cmd)
		if got := reply(); got != tt.want {
			t.Errorf("%s = %q, want %q", tt.cmd, got, tt.want)
		}
	}
}
