package mailserver

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// imapRaw is a line-level IMAP client that shows the server's exact answers.
type imapRaw struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dialIMAPRaw(t testing.TB, addr string) *imapRaw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	ic := &imapRaw{t: t, c: c, r: bufio.NewReader(c)}
	if g := ic.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	return ic
}

func (ic *imapRaw) line() string {
	ic.t.Helper()
	l, err := ic.r.ReadString('\n')
	if err != nil {
		ic.t.Fatalf("imap read: %v (after %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

func (ic *imapRaw) send(s string) {
	ic.t.Helper()
	if _, err := fmt.Fprintf(ic.c, "%s\r\n", s); err != nil {
		ic.t.Fatal(err)
	}
}

// cmd sends a tagged command line and returns the untagged lines and the tagged reply.
func (ic *imapRaw) cmd(line string) (untagged []string, tagged string) {
	ic.t.Helper()
	ic.send(line)
	tag, _, _ := strings.Cut(line, " ")
	return ic.until(tag)
}

// until reads lines up to the reply tagged tag.
func (ic *imapRaw) until(tag string) (untagged []string, tagged string) {
	ic.t.Helper()
	for {
		l := ic.line()
		if strings.HasPrefix(l, tag+" ") {
			return untagged, l
		}
		untagged = append(untagged, l)
	}
}

func (ic *imapRaw) ok(line string) []string {
	ic.t.Helper()
	u, tagged := ic.cmd(line)
	tag, _, _ := strings.Cut(line, " ")
	if !strings.HasPrefix(tagged, tag+" OK") {
		ic.t.Fatalf("%s: %s", line, tagged)
	}
	return u
}

func (ic *imapRaw) login() {
	ic.t.Helper()
	ic.ok("l1 LOGIN " + alice + " " + pass)
}

// sessionsOf returns how many sessions alice has on the store.
func sessionsOf(s *Server) int {
	a := s.user(alice)
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.sessions)
}

// waitNoSessions waits until every session of alice has ended on the server side.
func waitNoSessions(t testing.TB, s *Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for sessionsOf(s) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions still open", sessionsOf(s))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestIMAPSystemFlagsCanonicalCase(t *testing.T) {
	t.Parallel()
	r := startServer(t, Options{})
	sendSMTP(t, r.smtp, alice, "flags")
	ic := dialIMAPRaw(t, r.imap)
	ic.login()
	sel := strings.Join(ic.ok("s SELECT INBOX"), "\n")
	for _, want := range []string{
		`* FLAGS (\Answered \Deleted \Draft \Flagged \Seen)`,
		`* OK [PERMANENTFLAGS (\Answered \Deleted \Draft \Flagged \Seen \*)]`,
	} {
		if !strings.Contains(sel, want) {
			t.Errorf("SELECT: no %q in\n%s", want, sel)
		}
	}
	tests := []struct{ cmd, want string }{
		// Any case in, canonical case out; a keyword keeps the case it was first given.
		{`a STORE 1 +FLAGS (\seen \FLAGGED $Label1)`, `* 1 FETCH (UID 1 FLAGS ($Label1 \Flagged \Seen))`},
		// Flags compare without regard to case: no second $label1, and \SEEN removes \Seen.
		{`b STORE 1 +FLAGS ($label1 \answered)`, `* 1 FETCH (UID 1 FLAGS ($Label1 \Answered \Flagged \Seen))`},
		{`c STORE 1 -FLAGS (\SEEN $LABEL1)`, `* 1 FETCH (UID 1 FLAGS (\Answered \Flagged))`},
		{`d FETCH 1 (FLAGS)`, `* 1 FETCH (UID 1 FLAGS (\Answered \Flagged))`},
	}
	for _, tt := range tests {
		u := ic.ok(tt.cmd)
		if len(u) != 1 || u[0] != tt.want {
			t.Errorf("%s = %q, want %q", tt.cmd, u, tt.want)
		}
	}
	if u := ic.ok(`e SEARCH FLAGGED UNSEEN`); len(u) != 1 || u[0] != "* SEARCH 1" {
		t.Errorf("SEARCH FLAGGED UNSEEN = %q, want * SEARCH 1", u)
	}
}

func TestIMAPCopyMoveOfNothing(t *testing.T) {
	t.Parallel()
	r := startServer(t, Options{})
	sendSMTP(t, r.smtp, alice, "one")
	ic := dialIMAPRaw(t, r.imap)
	ic.login()
	ic.ok("s SELECT INBOX")
	tests := []struct{ cmd, want string }{
		// UIDs that match nothing: OK, without COPYUID and without untagged data.
		{"t1 UID COPY 999 Trash", "t1 OK COPY completed"},
		{"t2 UID MOVE 999 Trash", "t2 OK UID MOVE completed"},
		{"t3 UID COPY 5:9 Trash", "t3 OK COPY completed"},
		// Sequence numbers beyond the mailbox: a client error with its reason.
		{"t4 COPY 5 Trash", "t4 BAD [CLIENTBUG] Invalid message sequence number 5: the mailbox has 1 messages"},
		{"t5 MOVE 2:3 Trash", "t5 BAD [CLIENTBUG] Invalid message sequence number 2: the mailbox has 1 messages"},
	}
	for _, tt := range tests {
		u, tagged := ic.cmd(tt.cmd)
		if tagged != tt.want || len(u) != 0 {
			t.Errorf("%s = %q then %q, want only %q", tt.cmd, u, tagged, tt.want)
		}
	}
	// The session is still in step, and the message was neither copied nor moved.
	if u := ic.ok("n STATUS Trash (MESSAGES)"); len(u) != 1 || u[0] != `* STATUS "Trash" (MESSAGES 0)` {
		t.Errorf("STATUS Trash = %q", u)
	}
	u, tagged := ic.cmd("m UID MOVE 1 Trash")
	if tagged != "m OK UID MOVE completed" || len(u) != 2 || !strings.HasPrefix(u[0], "* OK [COPYUID ") || u[1] != "* 1 EXPUNGE" {
		t.Errorf("UID MOVE 1 Trash = %q then %q", u, tagged)
	}
}

func TestIMAPAppendCutOffStoresNothing(t *testing.T) {
	t.Parallel()
	r := startServer(t, Options{})
	ic := dialIMAPRaw(t, r.imap)
	ic.login()
	msg := "From: bob@example.test\r\nSubject: cut\r\n\r\n" + strings.Repeat("line of the body\r\n", 100)
	ic.send(fmt.Sprintf("a APPEND INBOX {%d}", len(msg)))
	if l := ic.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("APPEND: %q, want a continuation", l)
	}
	if _, err := ic.c.Write([]byte(msg[:len(msg)/2])); err != nil {
		t.Fatal(err)
	}
	ic.c.Close()
	waitNoSessions(t, r.s)
	if n := len(r.s.user(alice).inbox().Messages()); n != 0 {
		t.Fatalf("%d messages stored from a cut-off APPEND, want 0", n)
	}
	// A whole literal is stored, byte for byte.
	ic = dialIMAPRaw(t, r.imap)
	ic.login()
	ic.send(fmt.Sprintf("b APPEND INBOX {%d}", len(msg)))
	if l := ic.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("APPEND: %q, want a continuation", l)
	}
	ic.send(msg)
	if _, tagged := ic.until("b"); !strings.HasPrefix(tagged, "b OK [APPENDUID ") {
		t.Fatalf("APPEND = %q", tagged)
	}
	infos := r.s.user(alice).inbox().Messages()
	if len(infos) != 1 || infos[0].Size != len(msg) {
		t.Fatalf("stored %+v, want one message of %d bytes", infos, len(msg))
	}
}

func TestIMAPAppendOverLimit(t *testing.T) {
	t.Parallel()
	r := startServer(t, Options{MaxMessageBytes: 1000})
	ic := dialIMAPRaw(t, r.imap)
	ic.login()
	caps := ic.ok("c CAPABILITY")
	if len(caps) != 1 || !strings.Contains(caps[0], " APPENDLIMIT=1000") {
		t.Errorf("CAPABILITY = %q, want APPENDLIMIT=1000", caps)
	}
	// Refused from the announced size: no continuation, nothing read, the session goes on.
	u, tagged := ic.cmd("a APPEND INBOX {1001}")
	if want := "a NO [TOOBIG] Literals are limited to 1000 bytes for this command"; tagged != want || len(u) != 0 {
		t.Errorf("over-limit APPEND = %q then %q, want only %q", u, tagged, want)
	}
	if _, tagged := ic.cmd("b NOOP"); tagged != "b OK NOOP completed" {
		t.Errorf("NOOP after a refused APPEND = %q", tagged)
	}
	// A non-synchronizing one (LITERAL-) is sent regardless: it is skipped, and the
	// session stays in step.
	ic.send("e APPEND INBOX {1001+}\r\n" + strings.Repeat("x", 1001))
	if u, tagged := ic.until("e"); tagged != "e NO [TOOBIG] Literals are limited to 1000 bytes for this command" || len(u) != 0 {
		t.Errorf("over-limit APPEND {1001+} = %q then %q", u, tagged)
	}
	if _, tagged := ic.cmd("f NOOP"); tagged != "f OK NOOP completed" {
		t.Errorf("NOOP after a refused non-synchronizing APPEND = %q", tagged)
	}
	// At the limit it is accepted.
	msg := "Subject: fits\r\n\r\n" + strings.Repeat("x", 1000-19) + "\r\n"
	ic.send(fmt.Sprintf("d APPEND INBOX {%d}", len(msg)))
	if l := ic.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("APPEND at the limit: %q", l)
	}
	ic.send(msg)
	if _, tagged := ic.until("d"); !strings.HasPrefix(tagged, "d OK [APPENDUID ") {
		t.Fatalf("APPEND at the limit = %q", tagged)
	}
}

// Deliver is used here to store a message exactly as given, bare LFs included.
func deliverRaw(t *testing.T, s *Server, msg string) {
	t.Helper()
	if err := s.Deliver(context.Background(), "bob@example.test", []string{alice}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

// Malformed commands are the client's errors: BAD with the reason, and the session goes on.
func TestIMAPClientErrorsAreBAD(t *testing.T) {
	t.Parallel()
	r := startServer(t, Options{})
	sendSMTP(t, r.smtp, alice, "one")
	ic := dialIMAPRaw(t, r.imap)
	ic.login()
	ic.ok("s SELECT INBOX")
	tests := []struct{ cmd, want string }{
		{"a FETCH 1:*:* FLAGS", `a BAD [CLIENTBUG] Syntax error: bad number set value "1:*:*"`},
		{"b FETCH 0 FLAGS", `b BAD [CLIENTBUG] Syntax error: bad number set value "0"`},
		{"c SEARCH 1:*:*", `c BAD [CLIENTBUG] Syntax error: bad number set value "1:*:*"`},
		{"d CREATE \"x\x00y\"", "d BAD [CLIENTBUG] Syntax error: NUL, CR or LF in a quoted string"},
		{"e CREATE &Jjo", "e BAD [CLIENTBUG] Syntax error: mailbox name is not valid modified UTF-7 (RFC 3501 5.1.3)"},
		{"f SEARCH " + strings.Repeat("(", 1001) + "ALL" + strings.Repeat(")", 1001),
			"f BAD [CLIENTBUG] Syntax error: parentheses nested deeper than 1000"},
		{"g SEARCH " + strings.Repeat("NOT ", 101) + "ALL", "g BAD [CLIENTBUG] Syntax error: search keys nested deeper than 100"},
		{`h APPEND INBOX "31-Foo-2026 10:00:00 +0000" {1}`, `h BAD [CLIENTBUG] Syntax error: in date-time: parsing time "31-Foo-2026 10:00:00 +0000" as "_2-Jan-2006 15:04:05 -0700": cannot parse "Foo-2026 10:00:00 +0000" as "Jan"`},
	}
	for _, tt := range tests {
		u, tagged := ic.cmd(tt.cmd)
		if tagged != tt.want || len(u) != 0 {
			t.Errorf("%.40s = %q then %q, want only %q", tt.cmd, u, tagged, tt.want)
		}
		if _, tagged := ic.cmd("n NOOP"); tagged != "n OK NOOP completed" {
			t.Fatalf("NOOP after %.40s = %q", tt.cmd, tagged)
		}
	}
	// Search keys within the bound still work.
	if u := ic.ok("i SEARCH " + strings.Repeat("NOT ", 98) + "ALL"); len(u) != 1 || u[0] != "* SEARCH 1" {
		t.Errorf("SEARCH of 98 NOTs = %q", u)
	}
}

// Before login the server reads and holds little: commands of the authenticated state are
// refused unparsed, a literal over 4 KiB is refused without eating the next line, and an
// over-long line ends the connection with the reason.
func TestIMAPBeforeLogin(t *testing.T) {
	t.Parallel()
	r := startServer(t, Options{})
	ic := dialIMAPRaw(t, r.imap)
	tests := []struct{ cmd, want string }{
		{"a LOGIN {999999999}", "a NO [TOOBIG] Literals are limited to 4096 bytes for this command"},
		{"b NOOP", "b OK NOOP completed"},
		{"c SEARCH " + strings.Repeat("NOT ", 2000) + "ALL", "c BAD [CLIENTBUG] This command is only valid in the authenticated state: log in first"},
		{"d SELECT INBOX", "d BAD [CLIENTBUG] This command is only valid in the authenticated state: log in first"},
		{"e APPEND INBOX {10}", "e BAD [CLIENTBUG] This command is only valid in the authenticated state: log in first"},
	}
	for _, tt := range tests {
		u, tagged := ic.cmd(tt.cmd)
		if tagged != tt.want || len(u) != 0 {
			t.Errorf("%.40s = %q then %q, want only %q", tt.cmd, u, tagged, tt.want)
		}
	}
	ic.login() // still in step
	// A non-synchronizing literal over 4096 bytes (LITERAL-) cannot be skipped: BAD, and
	// the connection ends (RFC 7888 section 5).
	ic = dialIMAPRaw(t, r.imap)
	ic.send("g LOGIN {5000+}\r\n" + strings.Repeat("x", 5000) + " " + pass)
	if got, want := ic.line(), "g BAD Non-synchronizing literals are limited to 4096 bytes"; got != want {
		t.Errorf("LOGIN {5000+} = %q, want %q", got, want)
	}
	if l, err := ic.r.ReadString('\n'); err == nil {
		t.Errorf("the connection goes on after a LOGIN {5000+}: %q", l)
	}
	ic = dialIMAPRaw(t, r.imap)
	ic.send("f LOGIN " + alice + " " + strings.Repeat("x", 8200))
	if got, want := ic.line(), "* BYE [TOOBIG] Command line too long (at most 8192 bytes before login)"; got != want {
		t.Errorf("over-long line before login = %q, want %q", got, want)
	}
	if l, err := ic.r.ReadString('\n'); err == nil {
		t.Errorf("the connection goes on after BYE: %q", l)
	}
}

// A large APPEND is stored as large SMTP mail is: spooled while it waits for its commit,
// and not kept in memory after it. (Not parallel: it measures the heap.)
func TestIMAPAppendLargeStaysOutOfMemory(t *testing.T) {
	r := startServer(t, Options{})
	ic := dialIMAPRaw(t, r.imap)
	ic.login()
	const n, size = 3, 5 << 18 // 1.25 MiB each, over spillBytes
	base := heapMiB()
	for i := range n {
		tag := fmt.Sprintf("a%d", i)
		ic.send(fmt.Sprintf("%s APPEND INBOX {%d}", tag, size))
		if l := ic.line(); !strings.HasPrefix(l, "+ ") {
			t.Fatalf("APPEND: %q", l)
		}
		if _, err := io.CopyN(ic.c, newBigMessage(fmt.Sprintf("big %d", i), size), size); err != nil {
			t.Fatal(err)
		}
		ic.send("")
		if _, tagged := ic.until(tag); !strings.HasPrefix(tagged, tag+" OK [APPENDUID ") {
			t.Fatalf("APPEND of %d bytes = %q", size, tagged)
		}
	}
	// Held in memory, they would take n*size.
	if grew := heapMiB() - base; grew > float64(n*size)/2/(1<<20) {
		t.Errorf("heap grew %.1f MiB with %d appended messages of %.1f MiB in the mailbox", grew, n, float64(size)/(1<<20))
	}
	if spool, _ := os.ReadDir(spoolDir(r.s.opts.DataDir)); len(spool) != 0 {
		t.Errorf("%d files left in the spool after APPEND", len(spool))
	}
	inbox := r.s.user(alice).inbox()
	for i, m := range inbox.Messages() {
		body, _ := inbox.Body(m.UID)
		if want := readAllBig(t, fmt.Sprintf("big %d", i), size)[:size]; !bytes.Equal(body, want) || m.Size != size {
			t.Errorf("message %d: %d bytes stored (size %d), want the %d appended", m.UID, len(body), m.Size, size)
		}
	}
}
