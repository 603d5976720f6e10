package handset

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestNormalizePIN(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"2100000a", "2100000A", true},
		{" 2100000A ", "2100000A", true},
		{"2100000", "2100000", false},
		{"2100000G", "2100000G", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := NormalizePIN(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("NormalizePIN(%q) = %q, %v, want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestNewRejectsBadPIN(t *testing.T) {
	const want = `handset: PIN "XYZ" is not 8 hex digits`
	if _, err := New(Options{PIN: "XYZ"}); err == nil || err.Error() != want {
		t.Fatalf("New with PIN XYZ = %v, want %q", err, want)
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	h, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	m, added, err := h.AddMessage(Message{Kind: KindEmail, From: "bob@x", Subject: "hi", Key: "imap:1:7"})
	if err != nil || !added {
		t.Fatalf("AddMessage = %v, %v", added, err)
	}
	if _, added, _ := h.AddMessage(Message{Kind: KindEmail, Subject: "again", Key: "imap:1:7"}); added {
		t.Fatal("AddMessage with a listed key added it again")
	}
	if _, err := h.OpenMessage(m.ID); err != nil {
		t.Fatal(err)
	}
	if err := h.SetMailSync(MailSync{UIDValidity: 1, LastUID: 7}); err != nil {
		t.Fatal(err)
	}
	c, err := h.UpsertChannel(Channel{ChannelID: "http://x/news", Title: "News", URL: "http://x/news"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.OpenChannel(c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.UpsertChannel(Channel{ChannelID: "http://x/gone", Title: "Gone"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.DeleteChannel(ChannelKey("http://x/gone"), false); err != nil {
		t.Fatal(err)
	}
	if err := h.PutCache(CacheEntry{URL: "http://x/news", ContentType: "text/plain", Text: "body"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.DeclareApp("app1", 100, ""); err != nil {
		t.Fatal(err)
	}
	if err := h.SetAppState("app1", AppActive, 200, ""); err != nil {
		t.Fatal(err)
	}
	if ok, err := h.AddAppPush(100, AppPush{ID: "p1", MessageID: "m1", Body: "x"}); !ok || err != nil {
		t.Fatalf("AddAppPush = %v, %v", ok, err)
	}
	if ok, _ := h.AddAppPush(100, AppPush{ID: "p2", MessageID: "m1", Body: "x"}); ok {
		t.Fatal("AddAppPush kept a duplicate Push-Message-ID")
	}
	lastSeq := h.Events(0)[len(h.Events(0))-1].Seq
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	// A torn line at the end, as after a crash mid-write, must not lose the rest.
	f, _ := os.OpenFile(filepath.Join(dir, journalName), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"op":"message","v":{"id":"9`)
	f.Close()

	h2, err := New(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	msgs := h2.Messages()
	if len(msgs) != 1 || !msgs[0].Read || msgs[0].Subject != "hi" {
		t.Fatalf("after restart messages = %+v", msgs)
	}
	if !h2.HasMessageKey("imap:1:7") {
		t.Error("after restart the message key is unknown")
	}
	if s := h2.MailSync(); s.LastUID != 7 || s.UIDValidity != 1 {
		t.Errorf("after restart sync = %+v", s)
	}
	chs := h2.Channels()
	if len(chs) != 1 || !chs[0].Read || chs[0].Title != "News" {
		t.Fatalf("after restart channels = %+v", chs)
	}
	if e, ok := h2.CachedPage("http://x/news"); !ok || e.Text != "body" {
		t.Errorf("after restart cache = %+v, %v", e, ok)
	}
	a, err := h2.App("app1")
	if err != nil || a.State != AppActive || len(a.Pushes) != 1 {
		t.Errorf("after restart app = %+v, %v", a, err)
	}
	if got := h2.Events(0); len(got) == 0 || got[len(got)-1].Seq != lastSeq {
		t.Errorf("after restart the last event seq = %v, want %d", got, lastSeq)
	}
	m2, _, _ := h2.AddMessage(Message{Subject: "new"})
	if m2.ID == m.ID {
		t.Errorf("a new message reused ID %s", m.ID)
	}
}

func TestChannelReplaceAndRead(t *testing.T) {
	h, _ := New(Options{})
	c1, _ := h.UpsertChannel(Channel{ChannelID: "c", Title: "One"})
	h.OpenChannel(c1.ID)
	c2, _ := h.UpsertChannel(Channel{ChannelID: "c", Title: "Two"})
	chs := h.Channels()
	if len(chs) != 1 || chs[0].Title != "Two" || chs[0].Read || c2.ID != c1.ID {
		t.Fatalf("after replace channels = %+v", chs)
	}
	if _, err := h.DeleteChannel("nope", true); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteChannel(nope) = %v, want ErrNotFound", err)
	}
}

func TestCacheExpires(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h, _ := New(Options{Now: func() time.Time { return now }})
	h.PutCache(CacheEntry{URL: "u"})
	now = now.Add(DefaultCacheLifetime - time.Second)
	if _, ok := h.CachedPage("u"); !ok {
		t.Fatal("page gone before 12 hours")
	}
	now = now.Add(time.Second)
	if _, ok := h.CachedPage("u"); ok {
		t.Fatal("page still cached after 12 hours")
	}
}

func TestCoverageAndEvents(t *testing.T) {
	h, _ := New(Options{})
	in, changed := h.Coverage()
	if !in {
		t.Fatal("a new handset is out of coverage")
	}
	done := make(chan []Event)
	go func() {
		ev, _ := h.WaitEvents(context.Background(), 0)
		done <- ev
	}()
	h.SetCoverage(false)
	select {
	case <-changed:
	case <-time.After(time.Second):
		t.Fatal("coverage channel not closed")
	}
	ev := <-done
	if len(ev) == 0 || ev[0].Kind != EventCoverage || ev[0].Fields["coverage"] != "out" {
		t.Fatalf("events = %+v", ev)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := h.WaitEvents(ctx, ev[len(ev)-1].Seq); err == nil {
		t.Error("WaitEvents on a cancelled context returned no error")
	}
}

func TestEventHistoryRing(t *testing.T) {
	h, _ := New(Options{EventHistory: 3})
	for i := 0; i < 5; i++ {
		h.Emit("k", "t", nil)
	}
	ev := h.Events(0)
	if len(ev) != 3 || ev[0].Seq != 3 || ev[2].Seq != 5 {
		t.Fatalf("events = %+v", ev)
	}
}
