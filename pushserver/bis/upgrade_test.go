package bis

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bbsim/bbsim/pushserver/internal/store"
)

// TestOpenStoreOfLastRelease: the BIS subscriber store the last release before schema
// versions left (the push store's fixture, ../internal/store/testdata) opens migrated to
// the current version with its active subscription; a store newer than this bbsim knows is
// refused, naming it and its version.
func TestOpenStoreOfLastRelease(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "internal", "store", "testdata", "bis.db"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bis.db"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	svc, err := New(Options{DataDir: dir, Gateway: noGateway{}, Apps: []App{{ID: "com.example.chat", Password: "s3cret", Port: 33333}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := svc.Subscribers("com.example.chat", StateActive); !slices.Equal(got, []string{"2100000A"}) {
		t.Fatalf("Subscribers(com.example.chat, active) = %q, want [2100000A]", got)
	}
	var v int
	if err := svc.db.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != len(migrations) {
		t.Fatalf("schema version %d, %v; want %d", v, err, len(migrations))
	}
	if _, err := svc.db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	svc.Close()
	_, err = New(Options{DataDir: dir, Gateway: noGateway{}})
	path := filepath.Join(dir, "bis.db")
	if !errors.Is(err, store.ErrNewer) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "schema version 99") {
		t.Fatalf("New on a newer store = %v, want ErrNewer naming %s and version 99", err, path)
	}
}
