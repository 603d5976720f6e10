package mailserver

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Serve runs every given listener and one Shutdown ends them all with http.ErrServerClosed,
// the closed error of every bbsim server.
func TestServeListeners(t *testing.T) {
	t.Parallel()
	s, err := New(Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var lns Listeners
	addrs := map[string]string{}
	for name, p := range map[string]*net.Listener{"imap": &lns.IMAP, "pop3": &lns.POP3, "smtp": &lns.SMTP} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		*p = ln
		addrs[name] = ln.Addr().String()
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(lns) }()
	for name, want := range map[string]string{"imap": "* OK", "pop3": "+OK", "smtp": "220 "} {
		c, err := net.DialTimeout("tcp", addrs[name], 30*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil || !strings.HasPrefix(line, want) {
			t.Fatalf("%s greeting = %q, %v; want %q…", name, line, err, want)
		}
	}
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	select {
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) || !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve = %v, want ErrServerClosed (http.ErrServerClosed)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve still running 30s after Shutdown")
	}
}

// A listener that fails stops the whole server, and Serve returns the failure.
func TestServeListenerFailure(t *testing.T) {
	t.Parallel()
	s, err := New(Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	imap, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	broken := failingListener{imap.Addr()}
	err = s.Serve(Listeners{IMAP: imap, POP3: broken})
	if !errors.Is(err, errBroken) {
		t.Fatalf("Serve = %v, want the POP3 listener's failure", err)
	}
	if !s.isClosed() {
		t.Fatal("server still open after a listener failed")
	}
}

var errBroken = errors.New("listener broken")

type failingListener struct{ addr net.Addr }

func (l failingListener) Accept() (net.Conn, error) { return nil, errBroken }
func (l failingListener) Close() error              { return nil }
func (l failingListener) Addr() net.Addr            { return l.addr }
