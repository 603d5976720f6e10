package fleet

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bbsim/bbsim/internal/statedir"
	"github.com/bbsim/bbsim/pushserver"
)

// TestFleetKeepsDeviceSecrets runs a fleet with a state directory against a gateway,
// stops it and runs it again: the second fleet's handsets attach with the device secrets
// the gateway gave the first (kept in DIR/device-secrets, 0600), while a fleet with fresh
// state for the same PINs is refused.
func TestFleetKeepsDeviceSecrets(t *testing.T) {
	t.Parallel()
	gateway := startGateway(t, pushserver.Options{DataDir: t.TempDir()})
	dir := t.TempDir()
	run := func(dir string) (*Fleet, func()) {
		t.Helper()
		return runFleet(t, Options{Count: 3, Dir: dir, Gateway: gateway})
	}
	attached := func(f *Fleet) int {
		n := 0
		for _, c := range f.Counters() {
			if c.Attached {
				n++
			}
		}
		return n
	}
	f, stop := run(dir)
	waitUntil(t, 30*time.Second, func() bool { return attached(f) == 3 })
	stop()
	if fi, err := os.Stat(filepath.Join(dir, secretsName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, want mode 0600", secretsName, err)
	}

	f, _ = run(dir)
	waitUntil(t, 30*time.Second, func() bool { return attached(f) == 3 })

	// Fresh state: every handset is refused, and says why.
	lost, _ := run(t.TempDir())
	waitUntil(t, 30*time.Second, func() bool {
		for _, m := range lost.Members() {
			if m.Handset.LinkStatus().State != "refused" {
				return false
			}
		}
		return true
	})
	if attached(lost) != 0 {
		t.Fatalf("%d handsets of a fleet without its secrets attached", attached(lost))
	}
}

// TestFleetDirInUse: a second fleet on a state directory another fleet holds is refused
// with words naming the directory, and the directory is free again once the first closes.
func TestFleetDirInUse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := New(Options{Count: 2, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	second, err := New(Options{Count: 2, Dir: dir})
	if err == nil {
		second.Close()
		first.Close()
		t.Fatal("a second fleet on the same directory started")
	}
	if !errors.Is(err, statedir.ErrInUse) || !strings.Contains(err.Error(), dir) {
		t.Errorf("second fleet: %v, want ErrInUse naming %s", err, dir)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := New(Options{Count: 2, Dir: dir})
	if err != nil {
		t.Fatalf("a fleet after the first closed: %v", err)
	}
	again.Close()
}
