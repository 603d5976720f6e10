package mailserver

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	_ "modernc.org/sqlite"

	"github.com/bbsim/bbsim/internal/groupcommit"
	"github.com/bbsim/bbsim/internal/statedir"
	"github.com/bbsim/bbsim/mailserver/imapmem"
)

// db is the SQLite message store: users, mailboxes with UIDVALIDITY and the next UID,
// and messages with their flags. Every change is committed before it is acknowledged.
// Changes go through one writer goroutine that commits those arriving together in one
// transaction and one fsync (group commit); readers use connections of their own.
type db struct {
	sql   *sql.DB
	wconn *sql.Conn // the writer's connection
	w     *groupcommit.Writer[*op]
	stmts map[string]*sql.Stmt // writer-only cache of prepared statements
}

// op is one change to the store. fn runs inside the group's transaction; an op of one
// statement needs no savepoint, since a failed statement in SQLite undoes only itself.
type op struct {
	fn     func(w *wtx) error
	single bool
	then   func(err error) // called on the writer goroutine with the outcome, after the commit; must not block
}

// wtx is the writer's transaction; statements are prepared once and reused.
type wtx struct {
	tx    *sql.Tx
	d     *db
	bound map[string]*sql.Stmt
}

func (w *wtx) exec(query string, args ...any) (sql.Result, error) {
	ts := w.bound[query]
	if ts == nil {
		ps := w.d.stmts[query]
		if ps == nil {
			var err error
			if ps, err = w.d.sql.Prepare(query); err != nil {
				return nil, err
			}
			w.d.stmts[query] = ps
		}
		ts = w.tx.Stmt(ps)
		w.bound[query] = ts
	}
	return ts.Exec(args...)
}

const schema = `
CREATE TABLE IF NOT EXISTS users (
	email    TEXT PRIMARY KEY,
	password TEXT NOT NULL,
	pin      TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS mailboxes (
	user        TEXT NOT NULL,
	name        TEXT NOT NULL,
	uidvalidity INTEGER NOT NULL,
	uidnext     INTEGER NOT NULL DEFAULT 1,
	PRIMARY KEY (user, name)
);
CREATE TABLE IF NOT EXISTS messages (
	user          TEXT NOT NULL,
	mailbox       TEXT NOT NULL,
	uid           INTEGER NOT NULL,
	flags         TEXT NOT NULL DEFAULT '',
	internal_date INTEGER NOT NULL,
	body          BLOB NOT NULL,
	PRIMARY KEY (user, mailbox, uid)
);
`

func openDB(path string) (*db, error) {
	// foreign_keys(ON): the store declares none, but a deferred one is how the tests make a
	// commit itself fail.
	s, err := statedir.OpenSQLite("mail store", path, "_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)")
	if err != nil {
		return nil, err
	}
	s.SetMaxOpenConns(4)
	if _, err := s.Exec(schema); err != nil {
		s.Close()
		return nil, fmt.Errorf("mail store %s: %w", path, err)
	}
	if err := statedir.Keep(path); err != nil {
		s.Close()
		return nil, err
	}
	wconn, err := s.Conn(context.Background())
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("open mail store %s: %w", path, err)
	}
	d := &db{sql: s, wconn: wconn, stmts: map[string]*sql.Stmt{}}
	d.w = groupcommit.Start(groupcommit.Options{}, d.commit)
	return d, nil
}

// close commits what is queued, then closes the store.
func (d *db) close() error {
	d.w.Close()
	for _, ps := range d.stmts {
		ps.Close()
	}
	d.wconn.Close()
	return d.sql.Close()
}

// later queues o for a coming group commit without waiting; o.then gets the outcome.
// Operations are committed in the order they were queued.
func (d *db) later(o *op) error {
	return d.w.Submit(context.Background(), o)
}

// do runs fn in the next group commit and returns once it is committed.
func (d *db) do(single bool, fn func(w *wtx) error) error {
	done := make(chan error, 1)
	if err := d.later(&op{fn: fn, single: single, then: func(err error) { done <- err }}); err != nil {
		return err
	}
	return <-done
}

// commit runs a batch in one transaction, each operation of several statements in its own
// savepoint so that one failing leaves the others, and answers each operation. When the
// commit itself fails, every operation in the batch fails with it.
func (d *db) commit(batch []*op) {
	errs, err := d.run(batch)
	for i, o := range batch {
		if err != nil {
			o.then(err)
		} else {
			o.then(errs[i])
		}
	}
}

func (d *db) run(batch []*op) ([]error, error) {
	ctx := context.Background()
	tx, err := d.wconn.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin mail store transaction: %w", err)
	}
	w := &wtx{tx: tx, d: d, bound: make(map[string]*sql.Stmt, 4)}
	errs := groupcommit.EachInSavepoint(len(batch),
		func(i int) bool { return batch[i].single },
		func(i int) error { return batch[i].fn(w) },
		func(stmt string) error { _, err := w.exec(stmt); return err })
	if err := tx.Commit(); err != nil {
		// The driver rolls back what a failed COMMIT leaves open (a deferred constraint, a
		// full disk), so the next batch begins afresh.
		return nil, fmt.Errorf("commit mail store transaction: %w", err)
	}
	return errs, nil
}

// stats returns how many group commits ran and how many operations they carried.
func (d *db) stats() (commits, ops int64) { return d.w.Stats() }

// ensureUser creates the user and its default mailboxes when missing, updating the
// password (kept hashed) and PIN from the configuration. A password stored in plain text
// by an older version is replaced by its hash.
func (d *db) ensureUser(u User) error {
	var stored string
	err := d.sql.QueryRow(`SELECT password FROM users WHERE email = ?`, u.Email).Scan(&stored)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read user %s: %w", u.Email, err)
	}
	if !passwordMatches(stored, u.Password) {
		if stored, err = hashPassword(u.Password); err != nil {
			return err
		}
	}
	return d.do(false, func(w *wtx) error {
		if _, err := w.exec(`INSERT INTO users(email, password, pin) VALUES(?, ?, ?)
		ON CONFLICT(email) DO UPDATE SET password = excluded.password, pin = excluded.pin`, u.Email, stored, u.PIN); err != nil {
			return err
		}
		base := uint32(time.Now().Unix())
		for i, name := range []string{"INBOX", "Sent", "Trash"} {
			if _, err := w.exec(`INSERT OR IGNORE INTO mailboxes(user, name, uidvalidity) VALUES(?, ?, ?)`, u.Email, name, base+uint32(i)); err != nil {
				return err
			}
		}
		return nil
	})
}

// load reads a user's mailboxes and messages into u.
func (d *db) load(email string, u *imapmem.User) error {
	rows, err := d.sql.Query(`SELECT name, uidvalidity, uidnext FROM mailboxes WHERE user = ?`, email)
	if err != nil {
		return err
	}
	boxes := map[string]*imapmem.Mailbox{}
	next := map[string]imap.UID{}
	for rows.Next() {
		var name string
		var validity uint32
		var uidnext int64
		if err := rows.Scan(&name, &validity, &uidnext); err != nil {
			rows.Close()
			return err
		}
		boxes[name] = u.AddMailbox(name, validity)
		next[name] = imap.UID(uidnext)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	// Large messages stay in the store, to be read back when asked for.
	mrows, err := d.sql.Query(`SELECT mailbox, uid, flags, internal_date, length(body), rowid,
		CASE WHEN length(body) > ? THEN NULL ELSE body END FROM messages WHERE user = ? ORDER BY mailbox, uid`, spillBytes, email)
	if err != nil {
		return err
	}
	defer mrows.Close()
	for mrows.Next() {
		var box, flags string
		var uid, date, size, ref int64
		var body []byte
		if err := mrows.Scan(&box, &uid, &flags, &date, &size, &ref, &body); err != nil {
			return err
		}
		mb := boxes[box]
		switch {
		case mb == nil:
		case size > spillBytes:
			mb.LoadStored(imap.UID(uid), size, ref, time.Unix(0, date), parseFlags(flags))
		default:
			mb.Load(imap.UID(uid), body, time.Unix(0, date), parseFlags(flags))
		}
	}
	for name, mb := range boxes {
		mb.SetUIDNext(next[name])
	}
	return mrows.Err()
}

func parseFlags(s string) []imap.Flag {
	var out []imap.Flag
	for _, f := range strings.Fields(s) {
		out = append(out, imap.Flag(f))
	}
	return out
}

func joinFlags(fs []imap.Flag) string {
	ss := make([]string, len(fs))
	for i, f := range fs {
		ss[i] = string(f)
	}
	return strings.Join(ss, " ")
}

// userStore is the imapmem.Store of one user.
type userStore struct {
	d    *db
	user string
}

// Insert queues the message for the next group commit and returns at once; committed gets
// the outcome. It is one statement, so it needs no savepoint: the mailbox's next UID is
// kept by the messages themselves (load raises it past the highest) and written down only
// when messages are deleted (Delete).
//
// A message spilled to a file is read at its turn in the commit, so that it sits in memory
// only while its statement runs (the driver binds a BLOB whole).
func (s userStore) Insert(mailbox string, uid imap.UID, body imapmem.Body, t time.Time, flags []imap.Flag, committed func(int64, error)) error {
	var ref int64
	return s.d.later(&op{single: true, then: func(err error) { committed(ref, err) }, fn: func(w *wtx) error {
		buf := body.Buf
		if body.Path != "" {
			var err error
			if buf, err = os.ReadFile(body.Path); err != nil {
				return fmt.Errorf("read spooled message: %w", err)
			}
		}
		res, err := w.exec(`INSERT INTO messages(user, mailbox, uid, flags, internal_date, body) VALUES(?, ?, ?, ?, ?, ?)`,
			s.user, mailbox, int64(uid), joinFlags(flags), t.UnixNano(), buf)
		if err != nil {
			return err
		}
		ref, err = res.LastInsertId()
		return err
	}})
}

// Body reads back a message the mailbox keeps out of memory, by its rowid. The rowid of
// a row stays while the store is open (it is only renumbered by a VACUUM, which the server
// never runs), and the references are read afresh at each start.
func (s userStore) Body(ref int64) ([]byte, error) {
	var body []byte
	err := s.d.sql.QueryRow(`SELECT body FROM messages WHERE rowid = ?`, ref).Scan(&body)
	return body, err
}

func (s userStore) SetFlags(mailbox string, uid imap.UID, flags []imap.Flag) error {
	return s.d.do(true, func(w *wtx) error {
		_, err := w.exec(`UPDATE messages SET flags = ? WHERE user = ? AND mailbox = ? AND uid = ?`, joinFlags(flags), s.user, mailbox, int64(uid))
		return err
	})
}

func (s userStore) Delete(mailbox string, uids []imap.UID) error {
	return s.d.do(false, func(w *wtx) error {
		// The next UID outlives the messages that reached it.
		if _, err := w.exec(`UPDATE mailboxes SET uidnext = MAX(uidnext, (SELECT COALESCE(MAX(uid), 0) + 1 FROM messages WHERE user = ? AND mailbox = ?))
			WHERE user = ? AND name = ?`, s.user, mailbox, s.user, mailbox); err != nil {
			return err
		}
		for _, uid := range uids {
			if _, err := w.exec(`DELETE FROM messages WHERE user = ? AND mailbox = ? AND uid = ?`, s.user, mailbox, int64(uid)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s userStore) CreateMailbox(name string, uidValidity uint32) error {
	return s.d.do(true, func(w *wtx) error {
		_, err := w.exec(`INSERT INTO mailboxes(user, name, uidvalidity) VALUES(?, ?, ?)`, s.user, name, uidValidity)
		return err
	})
}

func (s userStore) DeleteMailbox(name string) error {
	return s.d.do(false, func(w *wtx) error {
		if _, err := w.exec(`DELETE FROM messages WHERE user = ? AND mailbox = ?`, s.user, name); err != nil {
			return err
		}
		_, err := w.exec(`DELETE FROM mailboxes WHERE user = ? AND name = ?`, s.user, name)
		return err
	})
}

func (s userStore) RenameMailbox(oldName, newName string) error {
	return s.d.do(false, func(w *wtx) error {
		if _, err := w.exec(`UPDATE mailboxes SET name = ? WHERE user = ? AND name = ?`, newName, s.user, oldName); err != nil {
			return err
		}
		_, err := w.exec(`UPDATE messages SET mailbox = ? WHERE user = ? AND mailbox = ?`, newName, s.user, oldName)
		return err
	})
}
