package mailserver

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// poisonCommits makes every commit that carries a message containing POISON fail at
// COMMIT itself, as a full disk would: a trigger breaks a deferred foreign key.
func poisonCommits(t *testing.T, s *Server) {
	t.Helper()
	for _, q := range []string{
		`CREATE TABLE poison_parent(id INTEGER PRIMARY KEY)`,
		`CREATE TABLE poison_child(parent INTEGER REFERENCES poison_parent(id) DEFERRABLE INITIALLY DEFERRED)`,
		`CREATE TRIGGER poison AFTER INSERT ON messages WHEN instr(NEW.body, 'POISON') > 0
			BEGIN INSERT INTO poison_child(parent) VALUES (-1); END`,
	} {
		if _, err := s.db.sql.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
}

// holdWriter keeps the store's writer busy in a commit until the returned function is
// called, so that what is delivered meanwhile goes in one commit after it.
func holdWriter(t *testing.T, s *Server) (release func()) {
	t.Helper()
	started, gate := make(chan struct{}), make(chan struct{})
	if err := s.db.later(&op{single: true, fn: func(*wtx) error { close(started); <-gate; return nil }, then: func(error) {}}); err != nil {
		t.Fatal(err)
	}
	<-started
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release) // a test that stops early must not leave the writer held
	return release
}

// waitQueued waits until n operations wait for the store's writer.
func waitQueued(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for s.db.w.Queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d operations queued, want %d", s.db.w.Queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// trySMTP sends one message and returns the server's answer as an error (nil for 250).
func trySMTP(addr, subject, body string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	msg := fmt.Sprintf("From: bob@example.test\r\nTo: %s\r\nSubject: %s\r\n\r\n%s\r\n", alice, subject, body)
	return c.SendMail("bob@example.test", []string{alice}, strings.NewReader(msg))
}

// TestFailedCommitFailsItsMessages: messages delivered together share a commit; when it
// fails, each of them (and only they) is answered 451, none appears at the idler or in
// the store, and the next delivery works.
func TestFailedCommitFailsItsMessages(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := startServer(t, Options{DataDir: dir})
	poisonCommits(t, r.s)
	id := startIdler(t, r.imap)
	waitIdling(t, r.s, 1)

	sendSMTP(t, r.smtp, alice, "before")
	if n := <-id.exists; n != 1 {
		t.Fatalf("EXISTS %d, want 1", n)
	}

	const together = 5
	release := holdWriter(t, r.s)
	answers := make(chan error, together)
	for i := range together {
		body := "Fine."
		if i == 2 {
			body = "POISON"
		}
		go func() { answers <- trySMTP(r.smtp, fmt.Sprintf("together %d", i), body) }()
	}
	waitQueued(t, r.s, together)
	release()
	for range together {
		var se *smtp.SMTPError
		if err := <-answers; !errors.As(err, &se) || se.Code != 451 {
			t.Errorf("a message of the failed commit was answered %v, want 451", err)
		}
	}

	sendSMTP(t, r.smtp, alice, "after")
	select {
	case n := <-id.exists:
		if n != 2 {
			t.Fatalf("EXISTS %d after the failed commit and one more message, want 2", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no EXISTS for the message after the failed commit")
	}
	checkSubjects(t, r.s, "before", "after")

	// And so it is on disk.
	r.s.Close()
	s, err := New(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkSubjects(t, s, "before", "after")
}

// checkSubjects checks the subjects in alice's INBOX, in order.
func checkSubjects(t *testing.T, s *Server, want ...string) {
	t.Helper()
	msgs := s.user(alice).inbox().Messages()
	var got []string
	for _, m := range msgs {
		body, _ := s.user(alice).inbox().Body(m.UID)
		_, rest, _ := strings.Cut(string(body), "Subject: ")
		subject, _, _ := strings.Cut(rest, "\r\n")
		got = append(got, subject)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("INBOX holds %q, want %q", got, want)
	}
}

// TestDeliveriesShareACommit: messages that arrive while a commit runs share the next
// one; none is answered or shown before it, and after it the idler sees them all, in the
// order of their UIDs.
func TestDeliveriesShareACommit(t *testing.T) {
	t.Parallel()
	r := startServer(t, Options{})
	id := startIdler(t, r.imap)
	waitIdling(t, r.s, 1)

	const together = 6
	release := holdWriter(t, r.s)
	commits0, ops0 := r.s.db.stats()
	answers := make(chan error, together)
	for i := range together {
		go func() { answers <- trySMTP(r.smtp, fmt.Sprintf("together %d", i), "Fine.") }()
	}
	waitQueued(t, r.s, together)
	if n := len(r.s.user(alice).inbox().Messages()); n != 0 {
		t.Fatalf("%d messages in the INBOX before their commit", n)
	}
	if len(answers) != 0 {
		t.Fatalf("a message was answered before its commit: %v", <-answers)
	}
	release()
	for range together {
		if err := <-answers; err != nil {
			t.Fatalf("SMTP: %v", err)
		}
	}
	if commits, ops := r.s.db.stats(); commits != commits0+1 || ops != ops0+together {
		t.Errorf("%d messages took %d commits (%d operations), want 1", together, commits-commits0, ops-ops0)
	}
	for got := uint32(0); got < together; {
		select {
		case got = <-id.exists:
		case <-time.After(10 * time.Second):
			t.Fatalf("EXISTS %d, want %d", got, together)
		}
	}
	var last uint32
	for _, m := range r.s.user(alice).inbox().Messages() {
		if uint32(m.UID) <= last {
			t.Errorf("UID %d after %d", m.UID, last)
		}
		last = uint32(m.UID)
	}
}
