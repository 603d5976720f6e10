package pushserver

import (
	"bytes"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bbsim/bbsim/internal/pgtest"
	"github.com/bbsim/bbsim/pushserver/internal/store"
	"github.com/bbsim/bbsim/rim"
)

// TestPostgresStore: with PushDB naming a PostgreSQL database (a real server, started
// here), pushes are stored there, not in the data directory, and the gateway behaves as
// with SQLite: delivery, duplicate ids, PAP status/cancel/replace, and queued pushes
// delivered exactly once after a SIGKILL. Gateways share a database under names of their
// own.
func TestPostgresStore(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t)

	t.Run("push stored there and delivered", func(t *testing.T) {
		t.Parallel()
		db := pg.NewDatabase(t)
		dir := t.TempDir()
		rc := newReceiver(t)
		s, base := startServer(t, Options{DataDir: dir, PushDB: db, Devices: seedDevices()})
		attach(t, base, rc, pinA)
		body := []byte("kept in postgres")
		code, text, _ := rimPush(t, base, "DESTINATION="+pinA+"&PORT=7874", map[string]string{"X-RIM-Push-ID": "pg-1", "Content-Type": "text/plain"}, body)
		if code != 200 {
			t.Fatalf("push = %d %s", code, text)
		}
		if d := rc.wait(t, 1)[0]; d.PushID != "pg-1" || !bytes.Equal(d.Body, body) {
			t.Fatalf("delivered %s %q", d.PushID, d.Body)
		}
		waitState(t, s, "pg-1", pinA, rim.StateDelivered)
		conn, err := sql.Open("pgx", db)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var state rim.State
		var stored []byte
		err = conn.QueryRow(`SELECT r.state, p.body FROM recipients r JOIN pushes p ON p.id = r.pid WHERE p.push_id = 'pg-1' AND r.pin = $1`, pinA).Scan(&state, &stored)
		if err != nil || state != rim.StateDelivered || !bytes.Equal(stored, body) {
			t.Fatalf("row in PostgreSQL: state %q body %q err %v, want delivered %q", state, stored, err, body)
		}
		if _, err := os.Stat(filepath.Join(dir, "push.db")); !os.IsNotExist(err) {
			t.Fatalf("push.db in the data directory: %v", err)
		}
		code, text, _ = rimPush(t, base, "DESTINATION="+pinA, map[string]string{"X-RIM-Push-ID": "pg-1"}, []byte("again"))
		if code != 400 || !strings.Contains(text, "duplicate") {
			t.Fatalf("duplicate push id = %d %q, want 400", code, text)
		}
	})
	t.Run("PAP status, cancel and replace", func(t *testing.T) {
		t.Parallel()
		papStatusCancelReplace(t, Options{PushDB: pg.NewDatabase(t), Devices: seedDevices()})
	})
	t.Run("queued pushes survive SIGKILL", func(t *testing.T) {
		t.Parallel()
		durabilityAcrossSIGKILL(t, childPushDBEnv+"="+pg.NewDatabase(t))
	})
	t.Run("one gateway per name", func(t *testing.T) {
		t.Parallel()
		db := strings.Replace(pg.NewDatabase(t), "bbsim@", "bbsim:s3cret@", 1) // trust: any password
		startServer(t, Options{PushDB: db})
		start := time.Now()
		_, err := Open(t.Context(), Options{DataDir: t.TempDir(), PushDB: db})
		if err == nil || !strings.Contains(err.Error(), "in use by another bbsim gateway") {
			t.Fatalf("second gateway on the same database: %v, want refused", err)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("error shows the password: %v", err)
		}
		t.Logf("refused after %v: %v", time.Since(start).Round(time.Millisecond), err)
	})
	t.Run("gateways sharing a database", func(t *testing.T) {
		t.Parallel()
		gatewaysSharing(t, pg.NewDatabase(t))
	})
	t.Run("a crashed gateway's pushes", func(t *testing.T) {
		t.Parallel()
		db := pg.NewDatabase(t)
		rc := newReceiver(t)
		// Gateway a in a process of its own holds pushes for a device attached nowhere,
		// and is killed.
		c := startChild(t, t.TempDir(), childPushDBEnv+"="+db, childInstanceEnv+"=a")
		for i := range 3 {
			id := fmt.Sprintf("crashed-%d", i)
			if code, text, _ := rimPush(t, c.base, "DESTINATION="+pinA+"&PORT=7874", map[string]string{"X-RIM-Push-ID": id}, []byte(id)); code != 200 {
				t.Fatalf("push %s through a = %d %s", id, code, text)
			}
		}
		c.kill(t)
		// The database has not noticed yet that a is gone: a's lock stays held (here by
		// the test, once the server let go of it) while the device attaches at b.
		pool, err := sql.Open("pgx", db)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		lock, err := pool.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer lock.Close()
		for held := false; !held; time.Sleep(10 * time.Millisecond) {
			if err := lock.QueryRowContext(t.Context(), "SELECT pg_try_advisory_lock($1, hashtext('a'))", store.LockClass).Scan(&held); err != nil {
				t.Fatal(err)
			}
		}
		_, b := startServer(t, Options{PushDB: db, PushInstance: "b", Devices: seedDevices(), sweepEvery: 100 * time.Millisecond})
		attach(t, b, rc, pinA)
		rc.none(t, 300*time.Millisecond) // a looks alive: its pushes stay
		// Once a's lock is free, b's sweep takes the pushes and delivers them in order, once.
		if _, err := lock.ExecContext(t.Context(), "SELECT pg_advisory_unlock($1, hashtext('a'))", store.LockClass); err != nil {
			t.Fatal(err)
		}
		for i, d := range rc.wait(t, 3) {
			if want := fmt.Sprintf("crashed-%d", i); d.PushID != want {
				t.Fatalf("delivery %d = %s, want %s", i, d.PushID, want)
			}
		}
		// a comes back and delivers nothing twice.
		c = startChild(t, t.TempDir(), childPushDBEnv+"="+db, childInstanceEnv+"=a")
		attach(t, c.base, rc, pinA)
		rc.none(t, 300*time.Millisecond)
	})
	t.Run("a stopped gateway's pushes expire elsewhere", func(t *testing.T) {
		t.Parallel()
		db := pg.NewDatabase(t)
		nt := newNotifications(t)
		sa, a := startServer(t, Options{PushDB: db, PushInstance: "a", Devices: seedDevices()})
		if code, text, _ := rimPush(t, a, "DESTINATION="+pinC, map[string]string{"X-RIM-Push-ID": "orphan", "X-RIM-Push-NotifyURL": nt.srv.URL}, []byte("x")); code != 200 {
			t.Fatalf("push through a = %d %s", code, text)
		}
		sa.Close() // and a does not come back; the device never attaches
		sb, _ := startServer(t, Options{PushDB: db, PushInstance: "b", Devices: seedDevices(), FlowControlTimeout: 500 * time.Millisecond, sweepEvery: 50 * time.Millisecond})
		if n := nt.wait(t, 1)[0]; n.PushID != "orphan" || n.Status != "4500" || n.Dest != pinC {
			t.Fatalf("notification = %+v, want orphan 4500 %s", n, pinC)
		}
		if st := waitState(t, sb, "orphan", pinC, rim.StateExpired); st.Code != 4500 {
			t.Fatalf("state = %+v", st)
		}
	})
	t.Run("a push for a device last attached at a stopped gateway", func(t *testing.T) {
		t.Parallel()
		db := pg.NewDatabase(t)
		rc := newReceiver(t)
		sa, a := startServer(t, Options{PushDB: db, PushInstance: "a", Devices: seedDevices(), sweepEvery: 50 * time.Millisecond})
		sb, b := startServer(t, Options{PushDB: db, PushInstance: "b", Devices: seedDevices()})
		attach(t, b, rc, pinA)
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			sa.mu.Lock()
			gw := sa.ho.gateway(pinA)
			sa.mu.Unlock()
			if gw == "b" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a does not know the device attached at b")
			}
		}
		sb.Close()
		if code, text, _ := rimPush(t, a, "DESTINATION="+pinA, map[string]string{"X-RIM-Push-ID": "to-stopped"}, []byte("kept")); code != 200 {
			t.Fatalf("push through a = %d %s", code, text)
		}
		// A few of a's sweeps run while the device is away: none may lose or expire the push.
		for swept, deadline := sa.ho.(*shared).sweeps.Load(), time.Now().Add(10*time.Second); sa.ho.(*shared).sweeps.Load() < swept+3; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("a swept %d times in 10 s, want 3", sa.ho.(*shared).sweeps.Load()-swept)
			}
		}
		attach(t, a, rc, pinA)
		if d := rc.wait(t, 1)[0]; d.PushID != "to-stopped" || string(d.Body) != "kept" {
			t.Fatalf("delivered %s %q", d.PushID, d.Body)
		}
		rc.none(t, 200*time.Millisecond)
	})
	t.Run("handsets moving while pushes arrive", func(t *testing.T) {
		t.Parallel()
		handsetsMoving(t, pg.NewDatabase(t))
	})
	t.Run("an acknowledgement through another gateway", func(t *testing.T) {
		t.Parallel()
		db := pg.NewDatabase(t)
		rc := newReceiver(t)
		sa, a := startServer(t, Options{PushDB: db, PushInstance: "a", Devices: seedDevices()})
		_, b := startServer(t, Options{PushDB: db, PushInstance: "b", Devices: seedDevices()})
		attach(t, a, rc, pinA)
		rimPush(t, a, "DESTINATION="+pinA+"&PORT=100", map[string]string{"X-RIM-Push-ID": "app-b", "X-RIM-Push-Reliability-Mode": "application"}, []byte("x"))
		rc.wait(t, 1)
		waitState(t, sa, "app-b", pinA, rim.StatePending)
		// The device's acknowledgement reaches b, which passes it on to a, which waits on it.
		if code, m := postJSON(t, b+"/device/ack", rc.proved(pinA, map[string]any{"pin": pinA, "push_id": "app-b", "code": 1000})); code != 200 {
			t.Fatalf("ack through b = %d %v", code, m)
		}
		if st := waitState(t, sa, "app-b", pinA, rim.StateDelivered); st.Code != 1000 {
			t.Fatalf("state = %+v", st)
		}
		if code, _ := postJSON(t, b+"/device/ack", rc.proved(pinA, map[string]any{"pin": pinA, "push_id": "app-b", "code": 1000})); code != 404 {
			t.Fatalf("second ack through b = %d, want 404", code)
		}
	})
	t.Run("device secrets shared", func(t *testing.T) {
		t.Parallel()
		db := pg.NewDatabase(t)
		rc := newReceiver(t)
		_, a := startServer(t, Options{PushDB: db, PushInstance: "a"})
		_, b := startServer(t, Options{PushDB: db, PushInstance: "b"})
		const pin = "2A000001" // no --user account: the device secret is its only proof
		attach(t, a, rc, pin)
		secret := rc.secret(pin)
		for _, gw := range []string{a, b} {
			if code, out := postJSON(t, gw+"/device/attach", map[string]any{"pin": pin, "receiver_url": "http://127.0.0.1:41999/"}); code != http.StatusUnauthorized || out["link_token"] != nil {
				t.Errorf("intruder's attach at %s: %d %v, want 401", gw, code, out)
			}
		}
		attach(t, b, rc, pin)
		if rc.secret(pin) != secret {
			t.Errorf("b issued another secret to a device a had given one")
		}
		if code, text, _ := rimPush(t, a, "DESTINATION="+pin+"&PORT=7874", map[string]string{"X-RIM-Push-ID": "via-a"}, []byte("x")); code != 200 {
			t.Fatalf("push through a = %d %s", code, text)
		}
		if d := rc.wait(t, 1)[0]; d.PushID != "via-a" {
			t.Fatalf("delivered %s", d.PushID)
		}
		// First attaches of a new PIN racing at both gateways: one gets the secret.
		const fresh = "2A000002"
		results := make(chan error, 8)
		for i := range 8 {
			go func() {
				_, err := attachErr([]string{a, b}[i%2], newRaceReceiver(rc), fresh)
				results <- err
			}()
		}
		won := 0
		for range 8 {
			if <-results == nil {
				won++
			}
		}
		if won != 1 {
			t.Errorf("%d of 8 first attaches racing at two gateways succeeded, want 1", won)
		}
	})
	t.Run("one device directory", func(t *testing.T) {
		t.Parallel()
		db := pg.NewDatabase(t)
		// b knows no device of its own; a, started before it, shares its list.
		startServer(t, Options{PushDB: db, PushInstance: "a", Devices: seedDevices()})
		_, b := startServer(t, Options{PushDB: db, PushInstance: "b"})
		for _, dest := range []string{pinC, "alice%40bbsim.test"} {
			if code, text, _ := rimPush(t, b, "DESTINATION="+dest, nil, []byte("x")); code != 200 {
				t.Fatalf("push through b to %s = %d %s", dest, code, text)
			}
		}
		// c starts after b and shares a device b hears of at once.
		startServer(t, Options{PushDB: db, PushInstance: "c", Devices: []Device{{PIN: "2C00000D", Email: "dora@bbsim.test"}}})
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			code, text, _ := rimPush(t, b, "DESTINATION=dora%40bbsim.test", nil, []byte("x"))
			if code == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("push through b to c's device = %d %s", code, text)
			}
		}
		if code, text, _ := rimPush(t, b, "DESTINATION=nobody%40bbsim.test", nil, []byte("x")); code != 403 {
			t.Fatalf("push to a device no gateway knows = %d %s, want 403", code, text)
		}
	})
	t.Run("not a postgres URL", func(t *testing.T) {
		t.Parallel()
		_, err := Open(t.Context(), Options{DataDir: t.TempDir(), PushDB: "mysql://x"})
		if err == nil || !strings.Contains(err.Error(), "postgres://") {
			t.Fatalf("Open with a mysql URL = %v, want an error naming postgres://", err)
		}
	})
}

// TestPostgresRestart: the database restarts under a running gateway (every connection
// ends); the next pushes are stored and delivered, and the gateway still holds its lock.
func TestPostgresRestart(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t)
	db := pg.NewDatabase(t)
	rc := newReceiver(t)
	_, base := startServer(t, Options{PushDB: db, Devices: seedDevices()})
	attach(t, base, rc, pinA)
	push := func(id string) {
		t.Helper()
		code, text, _ := rimPush(t, base, "DESTINATION="+pinA+"&PORT=7874", map[string]string{"X-RIM-Push-ID": id, "Content-Type": "text/plain"}, []byte(id))
		if code != 200 {
			t.Fatalf("push %s = %d %s", id, code, text)
		}
		if d := rc.wait(t, 1)[0]; d.PushID != id {
			t.Fatalf("delivered %s, want %s", d.PushID, id)
		}
	}
	push("before-restart")
	pg.Restart(t)
	push("after-restart")
	push("and-on")
	var ps PushStatus
	if code := getJSON(t, base+"/api/v1/pushes/before-restart", &ps); code != 200 || len(ps.Recipients) != 1 {
		t.Fatalf("status of a push from before the restart = %d %+v", code, ps)
	}
	if _, err := Open(t.Context(), Options{DataDir: t.TempDir(), PushDB: db}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second gateway after the restart: %v, want refused (the first holds the lock again)", err)
	}
	// The gateways listen again after the restart: a push through a second gateway, whose
	// device is attached at the first, arrives.
	_, other := startServer(t, Options{PushDB: db, PushInstance: "other", Devices: seedDevices()})
	pg.Restart(t)
	attach(t, base, rc, pinA) // announced once both listen again, or read from the tables
	code, text, _ := rimPush(t, other, "DESTINATION="+pinA, map[string]string{"X-RIM-Push-ID": "via-other"}, []byte("via other"))
	if code != 200 {
		t.Fatalf("push through the other gateway = %d %s", code, text)
	}
	if d := rc.wait(t, 1)[0]; d.PushID != "via-other" {
		t.Fatalf("delivered %s, want via-other", d.PushID)
	}
}

// gatewaysSharing: two gateways, a and b, on one PostgreSQL database. The database is the
// central record: push ids are unique over it and either gateway answers for any push and
// cancels it. A push reaches its device wherever the device attaches: the gateway holding
// it hands it over (and one that is not running has it taken), and it is delivered once.
func gatewaysSharing(t *testing.T, db string) {
	rc := newReceiver(t)
	sa, a := startServer(t, Options{PushDB: db, PushInstance: "a", Devices: seedDevices()})
	// b hears of attachments elsewhere late, as on a loaded machine: a device's attach at
	// a is answered once b has let the device go, not before.
	_, b := startServer(t, Options{PushDB: db, PushInstance: "b", Devices: seedDevices(), noticeLag: 300 * time.Millisecond})
	pushRIM := func(base, id, dest, body string) {
		t.Helper()
		code, text, _ := rimPush(t, base, "DESTINATION="+dest+"&PORT=7874", map[string]string{"X-RIM-Push-ID": id, "Content-Type": "text/plain"}, []byte(body))
		if code != 200 {
			t.Fatalf("push %s through %s = %d %s", id, base, code, text)
		}
	}
	got := func(id, body string) {
		t.Helper()
		if d := rc.wait(t, 1)[0]; d.PushID != id || string(d.Body) != body {
			t.Fatalf("delivered %s %q, want %s %q", d.PushID, d.Body, id, body)
		}
	}
	// held waits until the database says which gateway holds push id's recipient and in
	// what state is want ("a delivered"): a gateway records a delivery once the device
	// has answered, so the receiver has the push a moment before the row says so.
	held := func(id, want string) {
		t.Helper()
		conn, err := sql.Open("pgx", db)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var last string
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			var gw, state string
			if err := conn.QueryRow(`SELECT r.gateway, r.state FROM recipients r JOIN pushes p ON p.id = r.pid WHERE p.push_id = $1`, id).Scan(&gw, &state); err != nil {
				t.Fatalf("recipient of %s: %v", id, err)
			}
			if last = gw + " " + state; last == want {
				return
			}
		}
		t.Fatalf("%s held by %q, want %q", id, last, want)
	}

	// a holds a push for a device attached nowhere; b answers for it from the database.
	pushRIM(a, "shared-1", pinB, "via a")
	var ps PushStatus
	if code := getJSON(t, b+"/api/v1/pushes/shared-1", &ps); code != 200 || len(ps.Recipients) != 1 || ps.Recipients[0].State != rim.StateQueued {
		t.Fatalf("status of a's push through b = %d %+v", code, ps)
	}
	if code, text, _ := rimPush(t, b, "DESTINATION="+pinB, map[string]string{"X-RIM-Push-ID": "shared-1"}, []byte("via b")); code != 400 {
		t.Fatalf("the same id through b = %d %s, want 400", code, text)
	}
	// A PAP cancel through b cancels what a holds.
	cancel := func(base, id string, want int) {
		t.Helper()
		doc := `<?xml version="1.0"?>` + "\r\n" + papDoctype20 + "\r\n" + `<pap><cancel-message push-id="` + id + `"/></pap>`
		code, ans := rawPOST(t, base, "/pap", "application/xml", doc)
		if a := decodeAnswer(t, ans); a.Cancel == nil || a.Cancel.Result.Code != want {
			t.Fatalf("cancel %s through %s = %d %s, want %d", id, base, code, ans, want)
		}
	}
	pushRIM(a, "shared-0", pinB, "cancelled through b")
	cancel(b, "shared-0", 1000)
	held("shared-0", "a cancelled")
	cancel(b, "shared-0", 2008)

	// The device attaches at b: a hands its push over, b delivers it once.
	attach(t, b, rc, pinB)
	got("shared-1", "via a")
	waitState(t, sa, "shared-1", pinB, rim.StateDelivered)
	held("shared-1", "b delivered")

	// A push through a for the device attached at b, by the e-mail it attached with (not
	// the one a was given): a learnt it from b.
	pushRIM(a, "shared-2", strings.ToLower(pinB)+"@bbsim.test", "by e-mail via a")
	got("shared-2", "by e-mail via a")

	// Either gateway tells where the device is.
	type deviceRow struct {
		PIN      string `json:"pin"`
		Attached bool   `json:"attached"`
		Gateway  string `json:"gateway"`
	}
	for _, base := range []string{a, b} {
		var devs []deviceRow
		getJSON(t, base+"/api/v1/devices", &devs)
		i := slices.IndexFunc(devs, func(d deviceRow) bool { return d.PIN == pinB })
		if i < 0 || devs[i].Gateway != "b" || devs[i].Attached != (base == b) {
			t.Fatalf("devices at %s: %+v, want %s attached at b", base, devs, pinB)
		}
	}

	// The device moves to a: b lets it go, and b's pushes follow it.
	attach(t, a, rc, pinB)
	pushRIM(b, "shared-3", pinB, "via b")
	got("shared-3", "via b")
	held("shared-3", "a delivered")

	// a holds a push for the device, now out of coverage, and stops; the device attaches
	// at b, which takes the push from the stopped gateway.
	detach(t, a, rc, pinB)
	pushRIM(a, "shared-4", pinB, "from a stopped gateway")
	pushRIM(a, "shared-5", pinB, "cancelled after a stopped")
	sa.Close()
	cancel(b, "shared-5", 1000)
	attach(t, b, rc, pinB)
	got("shared-4", "from a stopped gateway")
	// a comes back: nothing of it is delivered twice.
	startServer(t, Options{PushDB: db, PushInstance: "a", Devices: seedDevices()})
	rc.none(t, 300*time.Millisecond)
	held("shared-4", "b delivered")
	if _, err := Open(t.Context(), Options{DataDir: t.TempDir(), PushDB: db, PushInstance: "a"}); err == nil || !strings.Contains(err.Error(), `named "a"`) {
		t.Fatalf("a second gateway named a: %v, want refused", err)
	}
}

// handsetsMoving: pushes go in through both gateways while handsets move between them;
// once they settle, every push has arrived exactly once.
func handsetsMoving(t *testing.T, db string) {
	const devices, pushes = 12, 300
	rc := newReceiver(t)
	var devs []Device
	for i := range devices {
		devs = append(devs, Device{PIN: fmt.Sprintf("2B0000%02X", i)})
	}
	_, a := startServer(t, Options{PushDB: db, PushInstance: "a", Devices: devs})
	_, b := startServer(t, Options{PushDB: db, PushInstance: "b", Devices: devs})
	gateways := []string{a, b}
	for i, d := range devs {
		attach(t, gateways[i%2], rc, d.PIN)
	}
	stop := make(chan struct{})
	type moves struct {
		n   int
		err error
	}
	moved := make(chan moves, 1)
	go func() {
		var m moves
		defer func() { moved <- m }()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
			// Moves and re-attachments; a failure is the test's to report, not this
			// goroutine's.
			if _, m.err = attachErr(gateways[(i/7)%2], rc, devs[(i*5)%devices].PIN); m.err != nil {
				return
			}
			m.n++
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}()
	for i := range pushes {
		id := fmt.Sprintf("m-%d", i)
		if code, text, _ := rimPush(t, gateways[i%2], "DESTINATION="+devs[i%devices].PIN, map[string]string{"X-RIM-Push-ID": id}, []byte(id)); code != 200 {
			t.Fatalf("push %s = %d %s", id, code, text)
		}
	}
	close(stop)
	m := <-moved
	if m.err != nil {
		t.Fatalf("a move after %d: %v", m.n, m.err)
	}
	t.Logf("%d moves while %d pushes went in", m.n, pushes)
	for _, d := range devs {
		attach(t, b, rc, d.PIN) // settle at b
	}
	got := map[string]int{}
	for _, d := range rc.wait(t, pushes) {
		got[d.PIN+"/"+d.PushID]++
	}
	for quiet := time.After(500 * time.Millisecond); quiet != nil; {
		select {
		case d := <-rc.got:
			got[d.PIN+"/"+d.PushID]++ // one too many: reported below
		case <-quiet:
			quiet = nil
		}
	}
	for i := range pushes {
		if k := fmt.Sprintf("%s/m-%d", devs[i%devices].PIN, i); got[k] != 1 {
			t.Errorf("%s delivered %d times", k, got[k])
		}
	}
}
