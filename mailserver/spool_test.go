package mailserver

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"
)

// bigMessage produces a message of size bytes, line by line, so that the test holds none
// of it in memory while it is sent.
type bigMessage struct {
	head    string
	size, n int
	line    int
	pending []byte
}

func newBigMessage(subject string, size int) *bigMessage {
	return &bigMessage{head: "From: bob@example.test\r\nTo: " + alice + "\r\nSubject: " + subject + "\r\n\r\n", size: size}
}

func (m *bigMessage) Read(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		if len(m.pending) == 0 {
			if m.n >= m.size {
				break
			}
			if m.line == 0 {
				m.pending = []byte(m.head)
			} else {
				m.pending = fmt.Appendf(m.pending[:0], "line %08d of a large message.\r\n", m.line)
			}
			m.line++
		}
		n := copy(p, m.pending)
		m.pending, p = m.pending[n:], p[n:]
		m.n += n
		total += n
	}
	if total == 0 {
		return 0, io.EOF
	}
	return total, nil
}

func heapMiB() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc) / (1 << 20)
}

// TestLargeMessagesStayOutOfMemory: large messages arriving over SMTP wait for their
// commit in spool files, not in memory, and the mailbox keeps no copy of them after it
// either; IMAP, POP3 and a restart read them back from the store whole.
func TestLargeMessagesStayOutOfMemory(t *testing.T) {
	dir := t.TempDir()
	r := startServer(t, Options{DataDir: dir, Locking: LockShared})
	id := startIdler(t, r.imap)
	waitIdling(t, r.s, 1)
	const n, size = 3, 5 << 18 // 1.25 MiB each, over spillBytes

	base := heapMiB()
	release := holdWriter(t, r.s)
	answers := make(chan error, n)
	for i := range n {
		go func() {
			c, err := smtp.Dial(r.smtp)
			if err != nil {
				answers <- err
				return
			}
			defer c.Close()
			answers <- c.SendMail("bob@example.test", []string{alice}, newBigMessage(fmt.Sprintf("big %d", i), size))
		}()
	}
	waitQueued(t, r.s, n)
	spool, err := os.ReadDir(spoolDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(spool) != n {
		t.Errorf("%d files in the spool while %d large messages wait, want %d", len(spool), n, n)
	}
	// Held in memory, they would take n*size.
	if grew := heapMiB() - base; grew > float64(n*size)/2/(1<<20) {
		t.Errorf("heap grew %.1f MiB while %d messages of %.1f MiB wait for their commit", grew, n, float64(size)/(1<<20))
	}
	release()
	for range n {
		if err := <-answers; err != nil {
			t.Fatalf("large message: %v", err)
		}
	}
	for got := uint32(0); got < n; {
		select {
		case got = <-id.exists:
		case <-time.After(10 * time.Second):
			t.Fatalf("EXISTS %d, want %d", got, n)
		}
	}
	if grew := heapMiB() - base; grew > float64(n*size)/2/(1<<20) {
		t.Errorf("heap grew %.1f MiB with %d messages of %.1f MiB in the mailbox", grew, n, float64(size)/(1<<20))
	}
	if spool, _ := os.ReadDir(spoolDir(dir)); len(spool) != 0 {
		t.Errorf("%d files left in the spool after delivery", len(spool))
	}

	// IMAP reads one back whole.
	c, err := imapclient.DialInsecure(r.imap, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(alice, pass).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{RFC822Size: true, Envelope: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		subject := m.Envelope.Subject
		want := "Return-Path: <bob@example.test>\r\n" + string(readAllBig(t, subject, size))
		body := m.FindBodySection(&imap.FetchItemBodySection{Peek: true})
		if string(body) != want || m.RFC822Size != int64(len(want)) {
			t.Errorf("FETCH %q: %d bytes (RFC822.SIZE %d), want the %d sent", subject, len(body), m.RFC822Size, len(want))
		}
	}

	// So does a restart.
	c.Close()
	r.s.Close()
	s, err := New(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, m := range s.user(alice).inbox().Messages() {
		body, _ := s.user(alice).inbox().Body(m.UID)
		if m.Size != len(body) || !bytes.Contains(body, []byte("line 00030000 of a large message")) {
			t.Errorf("message %d after a restart: %d bytes, size %d", m.UID, len(body), m.Size)
		}
	}
}

func readAllBig(t *testing.T, subject string, size int) []byte {
	b, err := io.ReadAll(newBigMessage(subject, size))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
