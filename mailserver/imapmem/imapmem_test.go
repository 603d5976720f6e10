package imapmem

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// fakeStore is a Store that commits when the test says so, so that the tests can look at
// a mailbox while a message waits for its commit.
type fakeStore struct {
	mu      sync.Mutex
	inserts chan insert
	bodies  map[int64][]byte
	flags   map[imap.UID][]imap.Flag
	deleted []imap.UID
	nextRef int64
}

type insert struct {
	uid       imap.UID
	body      Body
	committed func(ref int64, err error)
}

func newFakeStore() *fakeStore {
	return &fakeStore{inserts: make(chan insert, 16), bodies: map[int64][]byte{}, flags: map[imap.UID][]imap.Flag{}}
}

func (s *fakeStore) Insert(mailbox string, uid imap.UID, body Body, t time.Time, flags []imap.Flag, committed func(int64, error)) error {
	s.inserts <- insert{uid, body, committed}
	return nil
}

// commit answers the next insert: it keeps its text (read from the file for a large
// message, as the real store does) under a new reference, or fails with err.
func (s *fakeStore) commit(t *testing.T, err error) insert {
	t.Helper()
	var in insert
	select {
	case in = <-s.inserts:
	case <-time.After(30 * time.Second):
		t.Fatal("no insert reached the store after 30s")
	}
	if err != nil {
		in.committed(0, err)
		return in
	}
	buf := in.body.Buf
	if in.body.Path != "" {
		b, rerr := os.ReadFile(in.body.Path)
		if rerr != nil {
			t.Fatalf("store reads the spooled message: %v", rerr)
		}
		buf = b
	}
	s.mu.Lock()
	s.nextRef++
	ref := s.nextRef
	s.bodies[ref] = buf
	s.mu.Unlock()
	in.committed(ref, nil)
	return in
}

func (s *fakeStore) Body(ref int64) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bodies[ref]
	if !ok {
		return nil, errors.New("no such message")
	}
	return b, nil
}

func (s *fakeStore) SetFlags(mailbox string, uid imap.UID, flags []imap.Flag) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flags[uid] = flags
	return nil
}

func (s *fakeStore) Delete(mailbox string, uids []imap.UID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleted = append(s.deleted, uids...)
	return nil
}

func (s *fakeStore) CreateMailbox(string, uint32) error { return nil }
func (s *fakeStore) DeleteMailbox(string) error         { return nil }
func (s *fakeStore) RenameMailbox(string, string) error { return nil }

func newStoredMailbox(t *testing.T) (*Mailbox, *fakeStore) {
	st := newFakeStore()
	u := NewStoredUser("alice", "pw", st)
	return u.AddMailbox("INBOX", 1), st
}

// appendAsync runs Append on its own goroutine, since it returns only after the commit.
func appendAsync(mbox *Mailbox, text string, flags ...imap.Flag) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := mbox.Append([]byte(text), &imap.AppendOptions{Flags: flags})
		done <- err
	}()
	return done
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Append still waiting 30s after its commit")
		return nil
	}
}

func uids(mbox *Mailbox) []imap.UID {
	var out []imap.UID
	for _, m := range mbox.Messages() {
		out = append(out, m.UID)
	}
	return out
}

// A message is shown only once the store has committed it, and messages appear in the
// order of their UIDs even when the later one's sender would wake first.
func TestAppendShownAfterCommitInUIDOrder(t *testing.T) {
	t.Parallel()
	mbox, st := newStoredMailbox(t)
	first := appendAsync(mbox, "Subject: one\r\n\r\n1\r\n")
	in1 := <-st.inserts // held: not yet committed
	second := appendAsync(mbox, "Subject: two\r\n\r\n2\r\n")
	in2 := <-st.inserts
	if got := uids(mbox); len(got) != 0 {
		t.Fatalf("messages before any commit = %v, want none", got)
	}
	// The second commits first (its sender may wake first): nothing is shown yet.
	in2.committed(2, nil)
	if err := wait(t, second); err != nil {
		t.Fatalf("second Append = %v", err)
	}
	if got := uids(mbox); len(got) != 0 {
		t.Fatalf("messages with UID %d still uncommitted = %v, want none", in1.uid, got)
	}
	in1.committed(1, nil)
	if err := wait(t, first); err != nil {
		t.Fatalf("first Append = %v", err)
	}
	if got, want := uids(mbox), []imap.UID{in1.uid, in2.uid}; !slices.Equal(got, want) || in1.uid >= in2.uid {
		t.Fatalf("messages = %v, want %v in ascending order", got, want)
	}
}

// A failed commit answers NO [SERVERBUG] with the store's reason, and the message is not
// shown; its UID is not used again.
func TestAppendCommitFailure(t *testing.T) {
	t.Parallel()
	mbox, st := newStoredMailbox(t)
	done := appendAsync(mbox, "Subject: lost\r\n\r\nx\r\n")
	failed := st.commit(t, errors.New("disk full"))
	err := wait(t, done)
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo || ie.Code != imap.ResponseCodeServerBug || !strings.Contains(ie.Text, "disk full") {
		t.Fatalf("Append = %v, want NO [SERVERBUG] naming the store's error", err)
	}
	if got := uids(mbox); len(got) != 0 {
		t.Fatalf("messages = %v, want none", got)
	}
	done = appendAsync(mbox, "Subject: kept\r\n\r\ny\r\n")
	kept := st.commit(t, nil)
	if err := wait(t, done); err != nil {
		t.Fatalf("Append = %v", err)
	}
	if kept.uid <= failed.uid || !slices.Equal(uids(mbox), []imap.UID{kept.uid}) {
		t.Fatalf("messages = %v (failed UID %d), want only %d, above it", uids(mbox), failed.uid, kept.uid)
	}
}

// A large message goes to the store as a file and is read back from the store: the
// mailbox keeps no copy, and the file may go once AppendFile returns.
func TestAppendFileKeptByStore(t *testing.T) {
	t.Parallel()
	mbox, st := newStoredMailbox(t)
	text := "Subject: big\r\n\r\n" + strings.Repeat("x", 1<<16) + "\r\n"
	path := filepath.Join(t.TempDir(), "spool")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := mbox.AppendFile(path, int64(len(text)), nil)
		done <- err
	}()
	in := st.commit(t, nil)
	if err := wait(t, done); err != nil {
		t.Fatalf("AppendFile = %v", err)
	}
	if in.body.Buf != nil || in.body.Path != path || in.body.Size != int64(len(text)) {
		t.Fatalf("store got %+v, want the file, not a copy", in.body)
	}
	os.Remove(path)
	mbox.mutex.Lock()
	kept := mbox.l[0].buf
	mbox.mutex.Unlock()
	if kept != nil {
		t.Fatalf("mailbox keeps %d bytes of a message the store keeps", len(kept))
	}
	if b, ok := mbox.Body(in.uid); !ok || string(b) != text {
		t.Fatalf("Body = %d bytes, %v; want the %d bytes from the store", len(b), ok, len(text))
	}
	if m := mbox.Messages(); len(m) != 1 || m[0].Size != len(text) {
		t.Fatalf("Messages = %+v, want one of %d bytes", m, len(text))
	}
}

// Flags compare without regard to case (RFC 3501 §2.3.2): system flags are kept in their
// canonical case, keywords in the case first given; a change goes to the store.
func TestFlagsCaseAndStore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []imap.Flag
		want []imap.Flag
	}{
		{"system flag canonical", []imap.Flag{`\SEEN`}, []imap.Flag{imap.FlagSeen}},
		{"same flag twice", []imap.Flag{`\flagged`, imap.FlagFlagged}, []imap.Flag{imap.FlagFlagged}},
		{"keyword first case kept", []imap.Flag{"$Work", "$WORK"}, []imap.Flag{"$Work"}},
		{"mixed", []imap.Flag{"Junk", `\answered`}, []imap.Flag{"Junk", imap.FlagAnswered}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := flagSet{}
			for _, f := range tc.in {
				fs.add(f)
			}
			if got := fs.list(); !slices.Equal(got, tc.want) {
				t.Errorf("flags = %v, want %v", got, tc.want)
			}
		})
	}

	mbox, st := newStoredMailbox(t)
	done := appendAsync(mbox, "Subject: f\r\n\r\nx\r\n", `\seen`)
	in := st.commit(t, nil)
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
	mbox.AddFlag(in.uid, `\FLAGGED`)
	st.mu.Lock()
	got := st.flags[in.uid]
	st.mu.Unlock()
	if want := []imap.Flag{imap.FlagFlagged, imap.FlagSeen}; !slices.Equal(got, want) {
		t.Fatalf("store flags = %v, want %v", got, want)
	}
	if n, err := mbox.Remove([]imap.UID{in.uid, 999}); err != nil || n != 1 {
		t.Fatalf("Remove = %d, %v; want 1", n, err)
	}
	st.mu.Lock()
	deleted := st.deleted
	st.mu.Unlock()
	if !slices.Equal(deleted, []imap.UID{in.uid}) || len(mbox.Messages()) != 0 {
		t.Fatalf("store deleted %v, mailbox %v; want %d gone from both", deleted, uids(mbox), in.uid)
	}
}

// An APPEND literal cut off by the connection stores nothing.
func TestAppendLiteralCutOff(t *testing.T) {
	t.Parallel()
	mbox, st := newStoredMailbox(t)
	_, err := mbox.appendLiteral(shortLiteral{strings.NewReader("Subject: half"), 100}, &imap.AppendOptions{})
	if err == nil || !strings.Contains(err.Error(), "cut off after 13 of 100 bytes") {
		t.Fatalf("appendLiteral = %v, want the cut-off reported", err)
	}
	select {
	case in := <-st.inserts:
		t.Fatalf("store got %+v from a cut-off literal", in)
	default:
	}
}

type shortLiteral struct {
	*strings.Reader
	size int64
}

func (l shortLiteral) Size() int64 { return l.size }
