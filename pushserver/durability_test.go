package pushserver

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bbsim/bbsim/rim"
)

const (
	childEnv          = "BBSIM_PUSHSERVER_TEST_CHILD_DATA"
	childMaxActiveEnv = "BBSIM_PUSHSERVER_TEST_CHILD_MAX_ACTIVE"
	childPushDBEnv    = "BBSIM_PUSHSERVER_TEST_CHILD_PUSH_DB"
	childInstanceEnv  = "BBSIM_PUSHSERVER_TEST_CHILD_PUSH_INSTANCE"
	childFleetEnv     = "BBSIM_PUSHSERVER_TEST_CHILD_FLEET" // a benchmark's receivers
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(runChild(dir))
	}
	if kind := os.Getenv(childFleetEnv); kind != "" {
		os.Exit(runFleetChild(kind))
	}
	os.Exit(m.Run())
}

// runChild runs a push server as a separate process for the durability test.
func runChild(dir string) int {
	opts := Options{DataDir: dir, Devices: seedDevices(), PacketSize: 1024, PushDB: os.Getenv(childPushDBEnv), PushInstance: os.Getenv(childInstanceEnv)}
	if n, err := strconv.Atoi(os.Getenv(childMaxActiveEnv)); err == nil {
		opts.MaxActive = n
	}
	s, err := Open(context.Background(), opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("ADDR %s\n", ln.Addr())
	if err := s.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

type child struct {
	cmd  *exec.Cmd
	base string
}

func startChild(t testing.TB, dir string, env ...string) *child {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0])
	cmd.Env = append(append(os.Environ(), childEnv+"="+dir), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child server: %v", err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		cmd.Process.Kill()
		t.Fatalf("child server said %q, %v", line, err)
	}
	c := &child{cmd: cmd, base: "http://" + strings.TrimSpace(strings.TrimPrefix(line, "ADDR "))}
	t.Cleanup(func() { c.kill(t) })
	return c
}

func (c *child) kill(t testing.TB) {
	if c.cmd.ProcessState != nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
}

func TestDurabilityAcrossSIGKILL(t *testing.T) {
	t.Parallel()
	durabilityAcrossSIGKILL(t)
}

// durabilityAcrossSIGKILL is TestDurabilityAcrossSIGKILL with more environment for the
// server process (its store).
func durabilityAcrossSIGKILL(t *testing.T, env ...string) {
	dir := t.TempDir()
	rc := newReceiver(t)
	c := startChild(t, dir, env...)
	big := strings.Repeat("packetized content ", 400) // 7600 bytes = 8 packets of 1 KiB
	var ids []string
	for i := range 6 {
		id := fmt.Sprintf("durable-%d", i)
		body := fmt.Sprintf("push %d", i)
		if i == 3 {
			body = big
		}
		code, text, _ := rimPush(t, c.base, "DESTINATION=2100000A&PORT=7874", map[string]string{"X-RIM-Push-ID": id, "Content-Type": "text/plain"}, []byte(body))
		if code != 200 {
			t.Fatalf("push %d = %d %s", i, code, text)
		}
		ids = append(ids, id)
	}
	c.kill(t)

	c = startChild(t, dir, env...)
	attach(t, c.base, rc, pinA)
	for i, d := range rc.wait(t, len(ids)) {
		if d.PushID != ids[i] {
			t.Fatalf("delivery %d = %s, want %s (in order)", i, d.PushID, ids[i])
		}
		if i == 3 && (string(d.Body) != big || d.Packets != 8) {
			t.Fatalf("big push reassembled to %d bytes in %d packets", len(d.Body), d.Packets)
		}
	}
	var ps PushStatus
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		getJSON(t, c.base+"/api/v1/pushes/"+ids[len(ids)-1], &ps)
		if len(ps.Recipients) == 1 && ps.Recipients[0].State == rim.StateDelivered {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(ps.Recipients) != 1 || ps.Recipients[0].State != rim.StateDelivered {
		t.Fatalf("status after delivery = %+v", ps)
	}
	// Kill again after delivery: nothing is delivered twice after the next restart.
	c.kill(t)
	c = startChild(t, dir, env...)
	code, m := postJSON(t, c.base+"/device/attach", rc.proved(pinA, map[string]any{"pin": pinA, "receiver_url": rc.url(pinA)}))
	if code != 200 || m["queued"] != float64(0) {
		t.Fatalf("attach after second restart = %d %v, want 0 queued", code, m)
	}
	rc.none(t, 300*time.Millisecond)
}

func TestObservability(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	_, base := startServer(t, Options{Devices: seedDevices()})
	attach(t, base, rc, pinA)
	rimPush(t, base, "DESTINATION=2100000A&DESTINATION=2100000B&PORT=7874", map[string]string{"X-RIM-Push-ID": "obs"}, []byte("x"))
	rc.wait(t, 1)
	var ps PushStatus
	var states map[string]rim.State
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if code := getJSON(t, base+"/api/v1/pushes/obs", &ps); code != 200 {
			t.Fatalf("GET /api/v1/pushes/obs = %d", code)
		}
		states = map[string]rim.State{}
		for _, r := range ps.Recipients {
			states[r.PIN] = r.State
		}
		if states[pinA] == rim.StateDelivered {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ps.PushID != "obs" || states[pinA] != rim.StateDelivered || states[pinB] != rim.StateQueued || ps.AcceptedAt.IsZero() {
		t.Fatalf("status = %+v", ps)
	}
	if code := getJSON(t, base+"/api/v1/pushes/nope", nil); code != 404 {
		t.Fatalf("unknown push = %d, want 404", code)
	}
	var devs []deviceInfo
	getJSON(t, base+"/api/v1/devices", &devs)
	byPIN := map[string]deviceInfo{}
	for _, d := range devs {
		byPIN[d.PIN] = d
	}
	if !byPIN[pinA].Attached || byPIN[pinB].Queued != 1 || byPIN[pinB].Attached {
		t.Fatalf("devices = %+v", devs)
	}
	rimPush(t, base, "DESTINATION=2FFFFFFF", nil, []byte("x"))
	resp, err := rc.srv.Client().Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var text strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		text.WriteString(sc.Text() + "\n")
	}
	for _, want := range []string{
		"bbsim_push_accepted_total 1\n", `bbsim_push_results_total{state="delivered"} 1` + "\n",
		"bbsim_push_queued 1\n", "bbsim_push_queue_depth_max 1\n", "bbsim_push_rejected_total 1\n", "bbsim_push_devices_attached 1\n",
		`bbsim_push_delivery_seconds_bucket{le="+Inf"} 1` + "\n", "# TYPE bbsim_push_delivery_seconds histogram",
		`bbsim_push_results_total{state="expired"} 0` + "\n",
		// The Go runtime and process collectors.
		"# TYPE go_goroutines gauge", "# TYPE go_gc_duration_seconds summary", "# TYPE process_resident_memory_bytes gauge",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, text.String())
		}
	}
}

// TestDurabilityPendingAck: a push delivered at transport level and waiting for the
// application's acknowledgement survives a SIGKILL; the acknowledgement after the restart
// completes it, and the push is not sent again.
func TestDurabilityPendingAck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rc := newReceiver(t)
	c := startChild(t, dir)
	attach(t, c.base, rc, pinB)
	if code, text, _ := rimPush(t, c.base, "DESTINATION=2100000B&PORT=100", map[string]string{"X-RIM-Push-ID": "ack-me", "X-RIM-Push-Reliability-Mode": "application"}, []byte("x")); code != 200 {
		t.Fatalf("push = %d %s", code, text)
	}
	rc.wait(t, 1)
	var ps PushStatus
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && (len(ps.Recipients) == 0 || ps.Recipients[0].State != rim.StatePending) {
		getJSON(t, c.base+"/api/v1/pushes/ack-me", &ps)
		time.Sleep(10 * time.Millisecond)
	}
	if ps.Recipients[0].State != rim.StatePending {
		t.Fatalf("before the kill: %+v, want pending", ps)
	}
	c.kill(t)
	c = startChild(t, dir)
	attach(t, c.base, rc, pinB)
	if code, m := postJSON(t, c.base+"/device/ack", rc.proved(pinB, map[string]any{"pin": pinB, "push_id": "ack-me", "code": 1000})); code != 200 {
		t.Fatalf("ack after restart = %d %v", code, m)
	}
	deadline = time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ps.Recipients[0].State != rim.StateDelivered {
		getJSON(t, c.base+"/api/v1/pushes/ack-me", &ps)
		time.Sleep(10 * time.Millisecond)
	}
	if ps.Recipients[0].State != rim.StateDelivered || ps.Recipients[0].TransportAt == nil {
		t.Fatalf("after ack: %+v", ps)
	}
	rc.none(t, 300*time.Millisecond)
}
