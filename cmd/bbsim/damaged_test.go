package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bbsim/bbsim/internal/childproc"
)

// TestDamagedStoresRefused damages the stores of a stopped bbsim server as a crash, a full
// disk or a stray command would (mail.db or push.db emptied, removed, pages overwritten,
// header overwritten), or as a newer bbsim would (push.db at a schema version this one does
// not know), and starts it again: it refuses, naming the file and --reset, rather than start
// empty or misread it; --reset then moves the state aside and starts afresh.
func TestDamagedStoresRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	ports := freePorts(t, 6)
	args := serverArgs(data, ports)
	srv, _ := startBBSim(t, args...)
	waitAPI(t, "http://"+ports[4]+"/api/v1/devices", "[", 30*time.Second)
	for range 2 {
		if out, errOut, code := runBBSim(t, t.Context(), "send", "--smtp", ports[2], "--subject", "Kept"); code != 0 {
			t.Fatalf("send: %s %s", out, errOut)
		}
	}
	for range 2 {
		pushMessage(t, ports[4], "2100000A", "Queued for later")
	}
	childproc.Stop(srv, syscall.SIGTERM, 10*time.Second)

	stores := map[string]string{"mail": filepath.Join(data, "mail", "mail.db"), "push": filepath.Join(data, "push", "push.db")}
	saved := map[string][]byte{}
	for name, p := range stores {
		b, err := os.ReadFile(p)
		if err != nil || len(b) < 3*4096 {
			t.Fatalf("%s store: %d bytes, %v", name, len(b), err)
		}
		saved[name] = b
	}
	restore := func() {
		for name, p := range stores {
			os.Remove(p + "-wal")
			os.Remove(p + "-shm")
			if err := os.WriteFile(p, saved[name], 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	garbage := bytes.Repeat([]byte{0xA5}, 4096)
	tests := []struct {
		name, store string
		damage      func(p string) error
		want        string
	}{
		{"mail.db emptied", "mail", func(p string) error { return os.Truncate(p, 0) }, "is empty (0 bytes)"},
		{"push.db emptied", "push", func(p string) error { return os.Truncate(p, 0) }, "is empty (0 bytes)"},
		{"mail.db removed", "mail", os.Remove, "has vanished"},
		{"push.db garbage pages", "push", func(p string) error {
			b := bytes.Clone(saved["push"])
			copy(b[4096:], garbage)
			copy(b[2*4096:], garbage)
			return os.WriteFile(p, b, 0o600)
		}, "is damaged"},
		{"mail.db garbage header", "mail", func(p string) error {
			b := bytes.Clone(saved["mail"])
			copy(b, garbage[:100])
			return os.WriteFile(p, b, 0o600)
		}, "mail.db"},
		{"mail.db half", "mail", func(p string) error { return os.Truncate(p, int64(len(saved["mail"])/2)) }, "mail.db"},
		// A newer bbsim's store: SQLite keeps the schema version (user_version) at byte 60.
		{"push.db from a newer bbsim", "push", func(p string) error {
			b := bytes.Clone(saved["push"])
			binary.BigEndian.PutUint32(b[60:], 99)
			return os.WriteFile(p, b, 0o600)
		}, "has schema version 99"},
	}
	for _, tt := range tests {
		restore()
		p := stores[tt.store]
		if err := tt.damage(p); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		_, errOut, code := runBBSim(t, ctx, args...)
		cancel()
		if code == 0 || !strings.Contains(errOut, p) || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d, stderr:\n%s\nwant a refusal naming %s and %q", tt.name, code, errOut, p, tt.want)
		}
		if tt.name != "mail.db garbage header" && tt.name != "mail.db half" && !strings.Contains(errOut, "--reset") {
			t.Errorf("%s: the refusal does not say how to start afresh:\n%s", tt.name, errOut)
		}
	}

	// --reset moves the damaged state aside and starts with empty stores.
	restore()
	os.Truncate(stores["mail"], 0)
	srv, out := startBBSim(t, append(args, "--reset")...)
	waitAPI(t, "http://"+ports[4]+"/api/v1/devices", "[", 30*time.Second)
	waitFor(t, 10*time.Second, "the reset notice", func() bool { return strings.Contains(out.String(), "--reset: moved "+data) })
	old, _ := filepath.Glob(data + ".old-*")
	if len(old) != 1 {
		t.Fatalf("--reset left %v beside %s, want one old copy", old, data)
	}
	if b, err := os.ReadFile(filepath.Join(old[0], "push", "push.db")); err != nil || !bytes.Equal(b[:100], saved["push"][:100]) {
		t.Errorf("the old push store was not kept aside: %v", err)
	}
	childproc.Stop(srv, syscall.SIGTERM, 10*time.Second)
}
