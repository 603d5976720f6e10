// Package imapmem is the mail server's IMAP mailbox index: mailboxes, messages, flags,
// sessions and the IDLE tracker, over a Store that keeps them.
//
// # Upstream
//
// It is adapted from go-imap's in-memory server, package imapserver/imapmemserver of
// github.com/emersion/go-imap/v2 at v2.0.0-beta.8 (MIT License, notice in each file), the
// version go.mod pins and mailserver/internal/goimap copies. What differs:
//
//   - Every change goes through a Store before it is acknowledged: APPEND (and COPY, MOVE,
//     SMTP delivery) waits for the Store's commit, and a message is shown only once
//     committed, in the order of its UID (Mailbox.appendBody, showSettledLocked); a failed
//     commit answers NO [SERVERBUG] and its UID stays unused. Flags, expunges and mailbox
//     create, rename and delete are written through too.
//   - A large message (Mailbox.AppendFile, LoadStored) is kept by the Store only and read
//     back by reference when fetched or searched.
//   - Flags compare without regard to case (RFC 3501 §2.3.2), system flags in their
//     canonical case (flags.go), which mbsync requires.
//   - An APPEND literal cut off by the connection stores nothing.
//   - Entry points for the POP3 server and webmail: NewStoredUser, AddMailbox, Load,
//     SetUIDNext, Messages, Body, AddFlag, Remove.
//
// imapmem_test.go tests these changes with a Store that commits on the test's word.
//
// # Re-merging a newer upstream
//
//  1. Raise github.com/emersion/go-imap/v2 in go.mod and re-copy mailserver/internal/goimap
//     (its README lists its own changes); imapmem imports imapserver from that copy.
//  2. Diff upstream's imapmemserver between the old and the new version
//     (git diff v2.0.0-beta.8..NEW -- imapserver/imapmemserver) and apply that diff here
//     by hand: the files keep upstream's names (mailbox.go, message.go, session.go,
//     user.go), so most hunks apply where they did.
//  3. Keep each change above; for new write paths upstream adds (a new command that changes
//     a mailbox), go through the Store as Append and Expunge do.
//  4. Update the version in this comment and in each file's notice, then run
//     go test -race ./mailserver/... (the Dovecot-compared and client tests included).
package imapmem
