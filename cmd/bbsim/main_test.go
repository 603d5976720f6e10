package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbsim/bbsim/fleet"
	"github.com/bbsim/bbsim/mailserver"
	"github.com/bbsim/bbsim/pushserver"
)

// bbsimBin is the command built once for the tests that run it as a user would.
var bbsimBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bbsim-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bbsimBin = filepath.Join(dir, "bbsim")
	build := exec.Command("go", "build", "-race", "-o", bbsimBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build bbsim:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runBBSim runs the command and returns its stdout, stderr and exit status.
func runBBSim(t *testing.T, ctx context.Context, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, bbsimBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Stdin = strings.NewReader("")
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run bbsim %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// pushFleet starts a push server (with at most maxActive pending pushes) and a fleet of n
// handsets attached to it.
func pushFleet(t *testing.T, n, maxActive int) (*fleet.Fleet, net.Addr) {
	t.Helper()
	ps, err := pushserver.Open(t.Context(), pushserver.Options{DataDir: t.TempDir(), MaxActive: maxActive})
	if err != nil {
		t.Fatal(err)
	}
	pln := listen(t)
	go ps.Serve(pln)
	t.Cleanup(func() { ps.Close() })
	fln := listen(t)
	f, err := fleet.New(fleet.Options{Count: n, Gateway: "http://" + pln.Addr().String(), BaseURL: "http://" + fln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	go f.Serve(fln)
	start := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; f.Close() })
	waitProgress(t, n, "handsets attached", func() int {
		k := 0
		for _, c := range f.Counters() {
			if c.Attached {
				k++
			}
		}
		return k
	})
	t.Logf("%d handsets attached in %v", n, time.Since(start).Round(time.Millisecond))
	return f, pln.Addr()
}

// stallTimeout is how long waitProgress waits for the count to grow: on a loaded machine a
// thousand handsets take their time, but one that makes no progress for this long is stuck.
const stallTimeout = 60 * time.Second

// waitProgress waits until count reaches n, failing when it has not grown for stallTimeout.
func waitProgress(t *testing.T, n int, what string, count func() int) {
	t.Helper()
	last, since := -1, time.Now()
	for {
		k := count()
		if k >= n {
			return
		}
		if k > last {
			last, since = k, time.Now()
		} else if time.Since(since) > stallTimeout {
			t.Fatalf("timed out waiting for %s: %d of %d, none more for %v", what, k, n, stallTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPushBulkFleet(t *testing.T) {
	for _, tc := range []struct {
		name      string
		n         int
		maxActive int
	}{
		{"1000 handsets", 1000, 0},
		{"server limited to 10 active", 300, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, addr := pushFleet(t, tc.n, tc.maxActive)
			host, port, _ := net.SplitHostPort(addr.String())
			var b strings.Builder
			b.WriteString("# host port PIN\n")
			for _, m := range f.Members() {
				fmt.Fprintf(&b, "%s %s %s\n", host, port, m.Handset.PIN())
			}
			bulk := filepath.Join(t.TempDir(), "bulk.txt")
			os.WriteFile(bulk, []byte(b.String()), 0o644)
			out, errOut, code := runBBSim(t, t.Context(), "push", "--bulk", bulk, "--type", "message", "--title", "bulk",
				"--progress", "always", "--retries", "30", "--file", "-")
			if code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			if !strings.Contains(errOut, "100%") || !strings.Contains(out, fmt.Sprintf("%d pushes, %d accepted, 0 failed", tc.n, tc.n)) {
				t.Fatalf("stdout:\n%s\nstderr:\n%s", out, errOut)
			}
			waitProgress(t, tc.n, "handsets with their push", func() int {
				k := 0
				for _, c := range f.Counters() {
					if c.Messages > 1 {
						t.Fatalf("%s has %d messages, want its one push", c.PIN, c.Messages)
					}
					k += c.Messages
				}
				return k
			})
		})
	}
}

func TestPushErrors(t *testing.T) {
	ps, err := pushserver.Open(t.Context(), pushserver.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	go ps.Serve(ln)
	defer ps.Close()
	gw := "http://" + ln.Addr().String()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown recipient", []string{"--gateway", gw, "--to", "2100FFFF", "--type", "message"}, 1, "HTTP 403"},
		{"unknown recipient over PAP", []string{"--gateway", gw, "--protocol", "pap", "--to", "2100FFFF", "--type", "message"}, 1, "code 2002"},
		{"connection refused", []string{"--gateway", "http://127.0.0.1:1", "--to", "2100000A"}, 1, "connection refused"},
		{"no recipient", []string{"--gateway", gw}, 2, "no recipient"},
		{"invalid PIN", []string{"--gateway", gw, "--to", "2100000Z"}, 2, `--to "2100000Z": not a PIN`},
		{"push_all outside BIS", []string{"--gateway", gw, "--to", "push_all"}, 2, "only with --protocol bis"},
		{"bad flag", []string{"--nope"}, 2, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runBBSim(t, t.Context(), append([]string{"push", "--file", "-"}, tt.args...)...)
			if code != tt.code || !strings.Contains(out+errOut, tt.want) {
				t.Fatalf("exit %d, want %d and %q\nstdout:\n%s\nstderr:\n%s", code, tt.code, tt.want, out, errOut)
			}
		})
	}
}

func TestLockoutCommand(t *testing.T) {
	out, errOut, code := runBBSim(t, t.Context(), "lockout", "--json")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{`"scenario": "exclusive"`, `"pop3": "-ERR [IN-USE]`, `"scenario": "polite-disconnect"`,
		`"scenario": "shared"`, `"handset_mode": "polling"`, `"handset_mode": "pop3"`, `"ok": true`} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in\n%s", want, out)
		}
	}
	out, _, code = runBBSim(t, t.Context(), "lockout", "--scenarios", "nonsense")
	if code == 0 {
		t.Fatalf("unknown scenario accepted: %s", out)
	}
}

func TestSendCommand(t *testing.T) {
	out, errOut, code := runBBSim(t, t.Context(), "send", "--smtp", "127.0.0.1:1")
	if code != 1 || !strings.Contains(errOut, "connection refused") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}

	// Against the bundled mail server: the message is in alice's mailbox, as sent.
	ms, err := mailserver.New(mailserver.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	smtpLn, pop3Ln := listen(t), listen(t)
	go ms.ServeSMTP(smtpLn)
	go ms.ServePOP3(pop3Ln)
	addr := smtpLn.Addr().String()
	out, errOut, code = runBBSim(t, t.Context(), "send", "--smtp", addr, "--subject", "Sent by the command", "--body", "Hello from bbsim send.")
	if code != 0 || !strings.HasPrefix(out, "sent ") || !strings.HasSuffix(out, " to alice@bbsim.test via "+addr+"\n") {
		t.Fatalf("bbsim send = exit %d\n%s\n%s", code, out, errOut)
	}
	c, err := textproto.Dial("tcp", pop3Ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.ReadLine() // greeting
	for _, cmd := range []string{"USER alice@bbsim.test", "PASS blackberry", "RETR 1"} {
		c.PrintfLine("%s", cmd)
		if l, err := c.ReadLine(); err != nil || !strings.HasPrefix(l, "+OK") {
			t.Fatalf("POP3 %s: %q %v", cmd, l, err)
		}
	}
	lines, err := c.ReadDotLines()
	if err != nil {
		t.Fatal(err)
	}
	msg := strings.Join(lines, "\n")
	id := strings.Fields(out)[1]
	for _, want := range []string{"Subject: Sent by the command", "From: tester@bbsim.test", "Hello from bbsim send.", id} {
		if !strings.Contains(msg, want) {
			t.Errorf("the delivered message lacks %q:\n%s", want, msg)
		}
	}
}

// bbsim push goes through the proxy named in the environment, with its credentials, and
// explains a 407.
func TestPushThroughProxy(t *testing.T) {
	var got []string
	var mu sync.Mutex
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL.Query().Get("DESTINATION"))
		mu.Unlock()
	}))
	defer target.Close()
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "Basic "+base64.StdEncoding.EncodeToString([]byte("qa:pw")) {
			w.Header().Set("Proxy-Authenticate", `Basic realm="proxy"`)
			w.WriteHeader(http.StatusProxyAuthRequired)
			return
		}
		// The push server's name is only known to the proxy.
		u := *r.URL
		u.Host = strings.TrimPrefix(target.URL, "http://")
		req, _ := http.NewRequest(r.Method, u.String(), r.Body)
		req.Header = r.Header.Clone()
		req.Header.Del("Proxy-Authorization")
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	defer proxy.Close()
	run := func(proxyURL string) (string, int) {
		cmd := exec.Command(bbsimBin, "push", "--gateway", "http://push.example.test:8080", "--to", "2100000A", "--file", "-")
		cmd.Stdin = strings.NewReader("")
		var env []string
		for _, e := range os.Environ() {
			if !strings.HasPrefix(strings.ToUpper(e), "NO_PROXY=") && !strings.HasPrefix(strings.ToUpper(e), "HTTP_PROXY=") {
				env = append(env, e)
			}
		}
		cmd.Env = append(env, "HTTP_PROXY="+proxyURL)
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	withCreds := strings.Replace(proxy.URL, "http://", "http://qa:pw@", 1)
	if out, code := run(withCreds); code != 0 || !strings.Contains(out, "accepted") {
		t.Fatalf("through the proxy: exit %d\n%s", code, out)
	}
	if len(got) != 1 || got[0] != "2100000A" {
		t.Fatalf("push server saw %v", got)
	}
	if out, code := run(proxy.URL); code != 1 || !strings.Contains(out, "407") || !strings.Contains(out, "HTTP_PROXY=http://user:password@") {
		t.Fatalf("without credentials: exit %d\n%s", code, out)
	}
}

// TestPushWait checks that bbsim push --wait follows a push to its final state: exit 0 when
// the handset took it, 1 with the device's code (and reason) when the handset refused it.
func TestPushWait(t *testing.T) {
	_, addr := pushFleet(t, 1, 0)
	gw := "http://" + addr.String()
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"delivered", []string{"--type", "message", "--title", "ok"}, 0, []string{"accepted", "to 2A000000: delivered"}},
		{"refused by the handset", []string{"--type", "channel", "--title", "News"}, 1,
			[]string{"to 2A000000: failed, code 400", "Browser-Channel needs", "1 recipient(s) not delivered"}},
	}
	// A bulk file of one line still prints the summary.
	host, port, _ := net.SplitHostPort(addr.String())
	bulk := filepath.Join(t.TempDir(), "one.txt")
	os.WriteFile(bulk, []byte(host+" "+port+" 2A000000\n"), 0o644)
	if out, errOut, code := runBBSim(t, t.Context(), "push", "--bulk", bulk, "--type", "message", "--title", "one", "--file", "-"); code != 0 || !strings.Contains(out, "1 pushes, 1 accepted, 0 failed") {
		t.Fatalf("one-line bulk: exit %d\n%s%s", code, out, errOut)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runBBSim(t, t.Context(), append([]string{"push", "--wait", "--wait-timeout", "60s",
				"--gateway", gw, "--to", "2A000000", "--file", "-"}, tt.args...)...)
			for _, w := range tt.want {
				if code != tt.code || !strings.Contains(out+errOut, w) {
					t.Fatalf("exit %d, want %d and %q\nstdout:\n%s\nstderr:\n%s", code, tt.code, w, out, errOut)
				}
			}
		})
	}
}

// TestSmallCommands covers bbsim version and the usage errors of bench and lockout.
func TestSmallCommands(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"version"}, 0, "bbsim "},
		{[]string{"--version"}, 0, "go1."},
		{[]string{"bench", "--only", "bogus"}, 2, `--only "bogus" selects no measurement; there are push, receiver, mail`},
		{[]string{"bench", "--only", "handover"}, 2, "selects no measurement"},
		{[]string{"bench", "--radio", "flaky,speed=1"}, 2, `--radio: radio profile "flaky,speed=1": unknown figure "speed"`},
		{[]string{"lockout", "--radio", "lte"}, 2, `--radio: unknown radio profile "lte": want one of gprs, edge, 3g, wifi, flaky, off`},
		{[]string{"fleet", "--coverage-schedule", "sometimes"}, 2, `--coverage-schedule: coverage schedule "sometimes"`},
	} {
		out, errOut, code := runBBSim(t, t.Context(), tt.args...)
		if code != tt.code || !strings.Contains(out+errOut, tt.want) {
			t.Errorf("bbsim %v: exit %d, want %d and %q\n%s%s", tt.args, code, tt.code, tt.want, out, errOut)
		}
	}
	// The lockout table fits 100 columns; what the servers said is below it, in full.
	out, errOut, code := runBBSim(t, t.Context(), "lockout", "--scenarios", "exclusive")
	if code != 0 || !strings.Contains(out, "exclusive: POP3: -ERR [IN-USE] Mailbox is locked by another IMAP session") {
		t.Fatalf("lockout: exit %d\n%s%s", code, out, errOut)
	}
	for _, l := range strings.Split(out, "\n") {
		if n := len([]rune(l)); n > 100 && !strings.HasPrefix(l, "exclusive: ") {
			t.Errorf("lockout table line of %d columns: %s", n, l)
		}
	}
}
