package handset

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMessageFloodIsCapped receives 20,000 browser messages of 4 KiB, as a flood of pushes
// to port 7874 would bring, reading some of them, and reports the journal's size and the
// restart: the list keeps MaxMessages (the oldest read ones gone first), the journal is
// compacted as it grows, and a restart reads it back quickly.
func TestMessageFloodIsCapped(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const max, flood = 200, 20_000
	h, err := New(Options{Dir: dir, MaxMessages: max})
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("x", 4096)
	var unread []string
	for i := range flood {
		m, _, err := h.AddMessage(Message{Kind: KindBrowser, Subject: fmt.Sprintf("flood %d", i), Text: body})
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 && i < flood-50 {
			if _, err := h.OpenMessage(m.ID); err != nil {
				t.Fatal(err)
			}
		} else {
			unread = append(unread, m.Subject)
		}
	}
	h.DeclareApp("app1", 100, "")
	for i := range 3 * max {
		if _, err := h.AddAppPush(100, AppPush{ID: fmt.Sprint(i), ContentType: "text/plain", Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(h *Handset, when string) {
		t.Helper()
		msgs := h.Messages()
		if len(msgs) != max {
			t.Fatalf("%s: %d messages, want %d", when, len(msgs), max)
		}
		// The newest unread ones are all there: the read ones made room first.
		have := map[string]bool{}
		for _, m := range msgs {
			have[m.Subject] = true
		}
		for _, s := range unread[len(unread)-max/2:] {
			if !have[s] {
				t.Errorf("%s: unread %q is gone while read ones were kept", when, s)
				break
			}
		}
		a, err := h.App("app1")
		if err != nil || len(a.Pushes) != max || a.Pushes[max-1].ID != fmt.Sprint(3*max-1) {
			t.Errorf("%s: app pushes %d (%v), want the newest %d", when, len(a.Pushes), err, max)
		}
	}
	check(h, "after the flood")
	info, err := os.Stat(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	start := time.Now()
	h2, err := New(Options{Dir: dir, MaxMessages: max})
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	took := time.Since(start)
	t.Logf("%d messages of 4 KiB received: journal %d KiB, restart %v", flood, info.Size()>>10, took)
	// Live state is about (max messages + max pushes) × 4 KiB; the journal may hold up to
	// twice that plus compactSlack records (the flood wrote 80 MiB).
	if limit := int64(16 << 20); info.Size() > limit {
		t.Errorf("journal %d bytes, want at most %d", info.Size(), limit)
	}
	check(h2, "after a restart")
}
