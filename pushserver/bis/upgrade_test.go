package bis

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestOpenStoreOfLastRelease: the BIS subscriber store the last release before schema
// versions left (the push store's fixture, ../internal/store/testdata) opens with its
// active subscription.
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
	defer svc.Close()
	if got := svc.Subscribers("com.example.chat", StateActive); !slices.Equal(got, []string{"2100000A"}) {
		t.Fatalf("Subscribers(com.example.chat, active) = %q, want [2100000A]", got)
	}
}
