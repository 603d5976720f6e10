package pushserver

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bbsim/bbsim/rim"
)

// TestAttachNeedsDeviceIdentity races two listeners for alice's PIN: her handset, which
// knows her password, and another program on the machine, which does not. The intruder's
// attach is refused and leaves her link alone, so her next push reaches her handset.
func TestAttachNeedsDeviceIdentity(t *testing.T) {
	t.Parallel()
	_, base := startServer(t, Options{Devices: []Device{{PIN: "2100000A", Email: "alice@bbsim.test", Password: "blackberry"}}})
	got := make(chan string, 4)
	listener := func(name string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			got <- name + ": " + string(b)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	alice, intruder := listener("alice"), listener("intruder")
	attach := func(url, password string) (int, map[string]any) {
		body := map[string]any{"pin": "2100000A", "receiver_url": url + "/"}
		if password != "" {
			body["password"] = password
		}
		return postJSON(t, base+"/device/attach", body)
	}
	if code, out := attach(alice.URL, "blackberry"); code != 200 || out["link_token"] == "" {
		t.Fatalf("alice's attach: %d %v", code, out)
	}
	for pw, want := range map[string]int{"": http.StatusUnauthorized, "guess": http.StatusForbidden} {
		code, out := attach(intruder.URL, pw)
		if code != want || out["link_token"] != nil {
			t.Errorf("intruder's attach with password %q: %d %v, want %d and no link token", pw, code, out, want)
		}
	}
	resp, err := http.Post(base+"/push?DESTINATION=2100000A&PORT=7874&REQUESTURI=/", "text/plain", strings.NewReader("for alice"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case g := <-got:
		if !strings.HasPrefix(g, "alice: ") {
			t.Errorf("the push went to %s", g)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the push reached no listener")
	}
}

// TestReadAPIsNeedPushAuth reads a push's status and the device list without credentials,
// with wrong ones and with an initiator's, under push authentication.
func TestReadAPIsNeedPushAuth(t *testing.T) {
	t.Parallel()
	_, base := startServer(t, Options{PushAuth: []Initiator{{Name: "app", Password: "pw"}}})
	for _, path := range []string{"/api/v1/devices", "/api/v1/pushes/nope"} {
		for _, tt := range []struct {
			user, pass string
			want       int
		}{{"", "", 401}, {"app", "wrong", 403}, {"app", "pw", 0}} {
			req, _ := http.NewRequest("GET", base+path, nil)
			if tt.user != "" {
				req.SetBasicAuth(tt.user, tt.pass)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if tt.want != 0 && resp.StatusCode != tt.want || tt.want == 0 && (resp.StatusCode == 401 || resp.StatusCode == 403) {
				t.Errorf("GET %s as %q: %d, want %d (0: allowed)", path, tt.user, resp.StatusCode, tt.want)
			}
		}
	}
}

// TestInitiatorsIsolated is one initiator going after another's pushes under push
// authentication, through curl: chat queries, cancels and replaces other's PAP push, and
// reads it at /api/v1/pushes/{id}; other reuses chat's RIM push id d1. Another initiator's
// push is as unknown as none (PAP 2004, HTTP 404), and a push id is the initiator's own.
func TestInitiatorsIsolated(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required (make test-deps installs it)")
	}
	// pinA is not attached: the pushes stay queued, which is what a cancel can reach.
	_, base := startServer(t, Options{Devices: seedDevices(),
		PushAuth: []Initiator{{Name: "chat", Password: "chatpw"}, {Name: "other", Password: "otherpw"}}})
	curl := func(creds string, args ...string) (int, string) {
		t.Helper()
		out, err := exec.CommandContext(t.Context(), "curl", append([]string{"-sS", "--max-time", "20", "-u", creds, "-w", "\n%{http_code}"}, args...)...).Output()
		if err != nil {
			t.Fatalf("curl %v: %v", args, err)
		}
		text := string(out)
		i := strings.LastIndexByte(text, '\n')
		code, _ := strconv.Atoi(text[i+1:])
		return code, text[:i]
	}
	rimPush := func(creds, id string) int {
		t.Helper()
		code, _ := curl(creds, "-H", "X-Rim-Push-Id: "+id, "-H", "Content-Type: text/plain", "--data-binary", "x",
			base+"/push?DESTINATION="+pinA+"&PORT=7874")
		return code
	}
	papPush := func(creds, pushMsg string) string {
		t.Helper()
		b, ct := papMultipart(papDoctype21, pushMsg, "Content-Type: text/plain\r\n", "x")
		_, out := curl(creds, "-H", "Content-Type: "+ct, "--data-binary", b, base+"/pap")
		return out
	}
	control := func(creds, msg, id string) string {
		t.Helper()
		_, out := curl(creds, "-H", "Content-Type: application/xml", "--data-binary",
			papDoctype21+`<pap><`+msg+` push-id="`+id+`"/></pap>`, base+"/pap")
		return out
	}
	source := func(creds, id string) (int, string) {
		t.Helper()
		code, out := curl(creds, base+"/api/v1/pushes/"+id)
		var ps PushStatus
		json.Unmarshal([]byte(out), &ps)
		return code, ps.Source
	}
	const chat, other = "chat:chatpw", "other:otherpw"
	addr := `<address address-value="WAPPUSH=` + pinA + `/TYPE=USER@rim.net"/>`

	if code := rimPush(chat, "d1"); code != 200 {
		t.Fatalf("chat's push d1 = %d", code)
	}
	if got := papPush(other, `<push-message push-id="o1">`+addr+`</push-message>`); !strings.Contains(got, `code="1001"`) {
		t.Fatalf("other's push o1: %s", got)
	}
	if got := control(chat, "statusquery-message", "o1"); !strings.Contains(got, `code="2004"`) || strings.Contains(got, pinA) {
		t.Errorf("chat's status query of other's o1: %s; want 2004 without the PIN", got)
	}
	if got := control(chat, "cancel-message", "o1"); !strings.Contains(got, `code="2004"`) {
		t.Errorf("chat's cancel of other's o1: %s; want 2004", got)
	}
	if got := papPush(chat, `<push-message push-id="r1" replace-push-id="o1">`+addr+`</push-message>`); !strings.Contains(got, `code="2004"`) {
		t.Errorf("chat replacing other's o1: %s; want 2004", got)
	}
	if code, src := source(chat, "o1"); code != 404 {
		t.Errorf("chat's GET /api/v1/pushes/o1 = %d (source %q), want 404", code, src)
	}
	if code, src := source(other, "o1"); code != 200 || src != "other" {
		t.Errorf("other's GET /api/v1/pushes/o1 = %d (source %q), want 200 from other", code, src)
	}
	if got := control(other, "statusquery-message", "o1"); !strings.Contains(got, `message-state="pending"`) {
		t.Errorf("other's status query of its o1 after chat's cancel and replace: %s; want still pending", got)
	}
	// other reuses chat's id: its own push, not a duplicate; each sees its own d1.
	if code := rimPush(other, "d1"); code != 200 {
		t.Fatalf("other's push d1 = %d, want 200", code)
	}
	if code := rimPush(other, "d1"); code != 400 {
		t.Errorf("other's second push d1 = %d, want 400 (duplicate)", code)
	}
	for _, c := range []struct{ creds, want string }{{chat, "chat"}, {other, "other"}} {
		if code, src := source(c.creds, "d1"); code != 200 || src != c.want {
			t.Errorf("GET /api/v1/pushes/d1 as %s = %d, source %q", c.want, code, src)
		}
	}
	if got := control(other, "cancel-message", "d1"); !strings.Contains(got, `code="1000"`) {
		t.Errorf("other's cancel of its d1: %s; want 1000", got)
	}
	if got := control(chat, "statusquery-message", "d1"); !strings.Contains(got, `message-state="pending"`) {
		t.Errorf("chat's d1 after other cancelled its own: %s; want still pending", got)
	}
}

// TestDetachAndAckNeedDeviceIdentity is another program on the machine, with curl, trying
// to acknowledge alice's push for her and to detach her handset: without the link token her
// attach returned, her device secret or her password, both are refused (401 without a
// proof, 403 with a wrong one) and change nothing.
func TestDetachAndAckNeedDeviceIdentity(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	s, base := startServer(t, Options{Devices: []Device{{PIN: pinA, Email: "alice@bbsim.test", Password: "blackberry"}}})
	code, out := postJSON(t, base+"/device/attach", map[string]any{"pin": pinA, "receiver_url": rc.url(pinA), "password": "blackberry"})
	token, _ := out["link_token"].(string)
	if code != 200 || token == "" {
		t.Fatalf("alice's attach: %d %v", code, out)
	}
	rimPush(t, base, "DESTINATION="+pinA+"&PORT=100", map[string]string{"X-RIM-Push-ID": "app1", "X-RIM-Push-Reliability-Mode": "Application-Preferred"}, []byte("x"))
	rc.wait(t, 1)
	waitState(t, s, "app1", pinA, rim.StatePending)

	for _, proof := range []map[string]any{{}, {"link_token": "guess"}, {"password": "guess"}, {"device_secret": "guess"}} {
		ack := map[string]any{"pin": pinA, "push_id": "app1", "code": 2000}
		det := map[string]any{"pin": pinA}
		for k, v := range proof {
			ack[k], det[k] = v, v
		}
		want := http.StatusForbidden
		if len(proof) == 0 {
			want = http.StatusUnauthorized
		}
		if code, out := curlJSON(t, base+"/device/ack", ack); code != want {
			t.Errorf("ack with %v: %d %v, want %d", proof, code, out, want)
		}
		if code, out := curlJSON(t, base+"/device/detach", det); code != want {
			t.Errorf("detach with %v: %d %v, want %d", proof, code, out, want)
		}
	}
	if ps, err := s.PushState("app1"); err != nil || ps.Recipients[0].State != rim.StatePending {
		t.Errorf("alice's push after the refused acks: %+v, %v; want still pending", ps, err)
	}
	if code, out := curlJSON(t, base+"/device/check", map[string]any{"pin": pinA, "link_token": token}); code != 200 || out["attached"] != true {
		t.Errorf("alice's link after the refused detaches: %d %v, want still attached", code, out)
	}
	// Her handset proves itself with the link token.
	if code, out := curlJSON(t, base+"/device/ack", map[string]any{"pin": pinA, "push_id": "app1", "code": 1000, "link_token": token}); code != 200 {
		t.Errorf("alice's ack: %d %v", code, out)
	}
	waitState(t, s, "app1", pinA, rim.StateDelivered)
	if code, out := curlJSON(t, base+"/device/detach", map[string]any{"pin": pinA, "link_token": token}); code != 200 {
		t.Errorf("alice's detach: %d %v", code, out)
	}
}

// TestDeviceSecretRefusesTakeover is the attack on a PIN without an account (a fleet's
// handset) as another program on the machine would run it, with curl: once the handset has
// attached, a second listener attaching for its PIN without the device secret the gateway
// issued it is refused (401; 403 with a guessed secret) and the handset still gets its
// push; detaching it or acknowledging for it fails alike. Two first attaches racing for a
// new PIN get one secret between them.
func TestDeviceSecretRefusesTakeover(t *testing.T) {
	t.Parallel()
	const pin = "2A000001"
	rc := newReceiver(t)
	s, base := startServer(t, Options{}) // no --user account for the PIN
	attach(t, base, rc, pin)
	secret := rc.secret(pin)
	if len(secret) != 64 {
		t.Fatalf("first attach gave device secret %q, want 64 hex digits", secret)
	}
	rimPush(t, base, "DESTINATION="+pin+"&PORT=100", map[string]string{"X-RIM-Push-ID": "app1", "X-RIM-Push-Reliability-Mode": "application"}, []byte("x"))
	rc.wait(t, 1)
	waitState(t, s, "app1", pin, "pending")

	// A guess one digit off the secret (its last digit changed, so never the secret itself).
	guess := secret[:63] + "0"
	if secret[63] == '0' {
		guess = secret[:63] + "1"
	}
	intruder := map[string]any{"pin": pin, "receiver_url": "http://127.0.0.1:41999/"}
	for _, tc := range []struct {
		path  string
		proof map[string]any
		want  int
	}{
		{"/device/attach", nil, http.StatusUnauthorized},
		{"/device/attach", map[string]any{"device_secret": "0123abcd"}, http.StatusForbidden},
		{"/device/attach", map[string]any{"link_token": "guess"}, http.StatusUnauthorized}, // no proof for an attach
		{"/device/detach", nil, http.StatusUnauthorized},
		{"/device/detach", map[string]any{"device_secret": guess}, http.StatusForbidden},
		{"/device/ack", map[string]any{"push_id": "app1", "code": 2000}, http.StatusUnauthorized},
		{"/device/ack", map[string]any{"push_id": "app1", "code": 2000, "link_token": "guess"}, http.StatusForbidden},
	} {
		req := map[string]any{}
		for k, v := range intruder {
			req[k] = v
		}
		for k, v := range tc.proof {
			req[k] = v
		}
		code, out := curlJSON(t, base+tc.path, req)
		msg, _ := out["error"].(string)
		if code != tc.want || out["link_token"] != nil || out["device_secret"] != nil ||
			!strings.Contains(msg, "device_secret") || !strings.Contains(msg, "--reset-device "+pin) {
			t.Errorf("POST %s %v: %d %v, want %d naming device_secret and --reset-device", tc.path, req, code, out, tc.want)
		}
	}
	if ps, err := s.PushState("app1"); err != nil || ps.Recipients[0].State != "pending" {
		t.Errorf("the handset's push after the refused acks: %+v, %v; want still pending", ps, err)
	}
	rimPush(t, base, "DESTINATION="+pin+"&PORT=7874", map[string]string{"X-RIM-Push-ID": "after"}, []byte("still mine"))
	if d := rc.wait(t, 1)[0]; d.PushID != "after" || d.PIN != pin {
		t.Errorf("delivered %s to %s, want after to the handset", d.PushID, d.PIN)
	}
	// The handset itself attaches again with its secret, and is not given another.
	code, out := curlJSON(t, base+"/device/attach", map[string]any{"pin": pin, "receiver_url": rc.url(pin), "device_secret": secret})
	if code != 200 || out["device_secret"] != nil {
		t.Errorf("the handset's attach with its secret: %d %v, want 200 and no new secret", code, out)
	}
	if code, out := curlJSON(t, base+"/device/ack", map[string]any{"pin": pin, "push_id": "app1", "code": 1000, "device_secret": secret}); code != 200 {
		t.Errorf("the handset's ack with its secret: %d %v", code, out)
	}

	// Two listeners racing for a PIN nobody attached yet: one wins the secret.
	const fresh = "2A000002"
	results := make(chan int, 8)
	for range 8 {
		go func() {
			_, err := attachErr(base, newRaceReceiver(rc), fresh)
			if err != nil {
				results <- 0
				return
			}
			results <- 1
		}()
	}
	won := 0
	for range 8 {
		won += <-results
	}
	if won != 1 {
		t.Errorf("%d of 8 racing first attaches succeeded, want 1", won)
	}
}

// newRaceReceiver is another device behind rc's listener, with secrets of its own.
func newRaceReceiver(rc *receiver) *receiver { return &receiver{t: rc.t, srv: rc.srv, got: rc.got} }

// TestDeviceSecretAcrossRestart: the gateway keeps a PIN's device secret in its store, so
// after a restart the handset's secret still attaches it and nothing else does; a restart
// with ResetDevices (bbsim server --reset-device) forgets it, and the next attach is a
// first one again.
func TestDeviceSecretAcrossRestart(t *testing.T) {
	t.Parallel()
	const pin = "2A000001"
	dir := t.TempDir()
	rc := newReceiver(t)
	var s *Server
	open := func(reset ...string) string {
		t.Helper()
		if s != nil {
			s.Close()
		}
		var base string
		s, base, _ = startServing(t, Options{DataDir: dir, ResetDevices: reset})
		return base
	}
	t.Cleanup(func() { s.Close() })
	base := open()
	attach(t, base, rc, pin)
	first := rc.secret(pin)

	base = open()
	if code, out := curlJSON(t, base+"/device/attach", map[string]any{"pin": pin, "receiver_url": "http://127.0.0.1:41999/"}); code != http.StatusUnauthorized {
		t.Errorf("intruder's attach after the restart: %d %v, want 401", code, out)
	}
	attach(t, base, rc, pin)
	if rc.secret(pin) != first {
		t.Errorf("the restarted gateway issued another secret")
	}

	base = open(strings.ToLower(pin))
	code, out := curlJSON(t, base+"/device/attach", map[string]any{"pin": pin, "receiver_url": rc.url(pin)})
	second, _ := out["device_secret"].(string)
	if code != 200 || second == "" || second == first {
		t.Fatalf("attach after --reset-device: %d %v, want 200 with a new secret", code, out)
	}
	if code, out := curlJSON(t, base+"/device/attach", map[string]any{"pin": pin, "receiver_url": rc.url(pin), "device_secret": first}); code != http.StatusForbidden {
		t.Errorf("attach with the forgotten secret: %d %v, want 403", code, out)
	}
	base = open("all")
	if code, out := curlJSON(t, base+"/device/attach", map[string]any{"pin": pin, "receiver_url": rc.url(pin)}); code != 200 || out["device_secret"] == nil {
		t.Errorf("attach after --reset-device all: %d %v, want 200 with a new secret", code, out)
	}
}

// TestAckScopedBySource: two initiators under push authentication push with the same id
// to one device, both asking for an application acknowledgement. The device's ack names
// the push's source (X-Bbsim-Push-Source on its packets), so acknowledging one finishes
// that one only; an ack that names no source while both wait is refused as ambiguous
// (409), and once one is finished it is for the other.
func TestAckScopedBySource(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	s, base := startServer(t, Options{Devices: seedDevices(),
		PushAuth: []Initiator{{Name: "chat", Password: "chatpw"}, {Name: "other", Password: "otherpw"}}})
	attach(t, base, rc, pinA)
	for _, ini := range []string{"chat", "other"} {
		req, _ := http.NewRequest("POST", base+"/push?DESTINATION="+pinA+"&PORT=100", strings.NewReader(ini))
		req.SetBasicAuth(ini, ini+"pw")
		req.Header.Set("X-RIM-Push-ID", "same")
		req.Header.Set("X-RIM-Push-Reliability-Mode", "application")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s's push = %d", ini, resp.StatusCode)
		}
	}
	sources := map[string]string{}
	for _, d := range rc.wait(t, 2) {
		sources[string(d.Body)] = d.Header.Get("X-Bbsim-Push-Source")
	}
	if sources["chat"] != "chat" || sources["other"] != "other" {
		t.Fatalf("X-Bbsim-Push-Source on the packets: %v", sources)
	}
	state := func(ini string) string {
		t.Helper()
		ps, err := s.PushStateOf(ini, "same")
		if err != nil || len(ps.Recipients) != 1 {
			t.Fatalf("%s's push: %+v, %v", ini, ps, err)
		}
		return string(ps.Recipients[0].State)
	}
	for deadline := time.Now().Add(20 * time.Second); state("chat") != "pending" || state("other") != "pending"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("pushes not both pending: chat %s, other %s", state("chat"), state("other"))
		}
	}
	ack := func(src any) (int, map[string]any) {
		req := rc.proved(pinA, map[string]any{"pin": pinA, "push_id": "same", "code": 1000})
		if src != nil {
			req["source"] = src
		}
		return curlJSON(t, base+"/device/ack", req)
	}
	if code, out := ack(nil); code != http.StatusConflict || !strings.Contains(out["error"].(string), `"source"`) {
		t.Errorf("ack naming no source while both wait: %d %v, want 409 asking for source", code, out)
	}
	if code, out := ack("other"); code != 200 {
		t.Fatalf("ack of other's push: %d %v", code, out)
	}
	waitState(t, s, "same", pinA, "delivered")
	if got := state("chat"); got != "pending" {
		t.Errorf("chat's push after the ack of other's: %s, want still pending", got)
	}
	if code, out := ack("other"); code != http.StatusNotFound {
		t.Errorf("second ack of other's push: %d %v, want 404", code, out)
	}
	if code, out := ack(nil); code != 200 {
		t.Fatalf("ack naming no source with chat's alone waiting: %d %v", code, out)
	}
	for deadline := time.Now().Add(20 * time.Second); state("chat") != "delivered"; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("chat's push after its ack: %s", state("chat"))
		}
	}
}

// TestDeviceSecretProposed: a first attach may carry the device's own secret, which the
// gateway adopts, so the same attach retried after its answer was lost (a client timeout)
// is the device's still; a proposal shorter than 32 characters gets one the gateway makes.
func TestDeviceSecretProposed(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	_, base := startServer(t, Options{})
	proposed := strings.Repeat("5a", 32)
	for i := range 2 {
		code, out := curlJSON(t, base+"/device/attach", map[string]any{"pin": "2A000001", "receiver_url": rc.url("2A000001"), "device_secret": proposed})
		if want := map[bool]any{true: proposed, false: nil}[i == 0]; code != 200 || out["device_secret"] != want {
			t.Errorf("attach %d with a proposed secret: %d %v, want 200 with device_secret %v", i+1, code, out, want)
		}
	}
	if code, out := curlJSON(t, base+"/device/attach", map[string]any{"pin": "2A000001", "receiver_url": rc.url("2A000001")}); code != http.StatusUnauthorized {
		t.Errorf("attach without the adopted secret: %d %v, want 401", code, out)
	}
	code, out := curlJSON(t, base+"/device/attach", map[string]any{"pin": "2A000002", "receiver_url": rc.url("2A000002"), "device_secret": "short"})
	if got, _ := out["device_secret"].(string); code != 200 || len(got) != 64 {
		t.Errorf("first attach proposing a short secret: %d %v, want 200 with a secret of the gateway's", code, out)
	}
}
