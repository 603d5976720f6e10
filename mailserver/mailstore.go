package mailserver

import (
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	_ "modernc.org/sqlite"

	"github.com/bbsim/bbsim/mailserver/imapmem"
)

// db is the SQLite message store: users, mailboxes with UIDVALIDITY and the next UID,
// and messages with their flags. Every change is committed before it is acknowledged.
type db struct {
	sql *sql.DB
	mu  sync.Mutex // one writer at a time
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
	s, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)")
	if err != nil {
		return nil, fmt.Errorf("open mail store %s: %w", path, err)
	}
	s.SetMaxOpenConns(1)
	if _, err := s.Exec(schema); err != nil {
		s.Close()
		return nil, fmt.Errorf("mail store %s: %w", path, err)
	}
	return &db{sql: s}, nil
}

func (d *db) close() error { return d.sql.Close() }

// ensureUser creates the user and its default mailboxes when missing, updating the
// password and PIN from the configuration.
func (d *db) ensureUser(u User) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	tx, err := d.sql.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`INSERT INTO users(email, password, pin) VALUES(?, ?, ?)
		ON CONFLICT(email) DO UPDATE SET password = excluded.password, pin = excluded.pin`, u.Email, u.Password, u.PIN); err != nil {
		return err
	}
	base := uint32(time.Now().Unix())
	for i, name := range []string{"INBOX", "Sent", "Trash"} {
		if _, err := tx.Exec(`INSERT OR IGNORE INTO mailboxes(user, name, uidvalidity) VALUES(?, ?, ?)`, u.Email, name, base+uint32(i)); err != nil {
			return err
		}
	}
	return tx.Commit()
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
	mrows, err := d.sql.Query(`SELECT mailbox, uid, flags, internal_date, body FROM messages WHERE user = ? ORDER BY mailbox, uid`, email)
	if err != nil {
		return err
	}
	defer mrows.Close()
	for mrows.Next() {
		var box, flags string
		var uid, date int64
		var body []byte
		if err := mrows.Scan(&box, &uid, &flags, &date, &body); err != nil {
			return err
		}
		if mb := boxes[box]; mb != nil {
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

func (s userStore) Insert(mailbox string, uid imap.UID, buf []byte, t time.Time, flags []imap.Flag) error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	tx, err := s.d.sql.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`INSERT INTO messages(user, mailbox, uid, flags, internal_date, body) VALUES(?, ?, ?, ?, ?, ?)`,
		s.user, mailbox, int64(uid), joinFlags(flags), t.UnixNano(), buf); err != nil {
		return err
	}
	if _, err := tx.Exec(`UPDATE mailboxes SET uidnext = MAX(uidnext, ?) WHERE user = ? AND name = ?`, int64(uid)+1, s.user, mailbox); err != nil {
		return err
	}
	return tx.Commit()
}

func (s userStore) SetFlags(mailbox string, uid imap.UID, flags []imap.Flag) error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	_, err := s.d.sql.Exec(`UPDATE messages SET flags = ? WHERE user = ? AND mailbox = ? AND uid = ?`, joinFlags(flags), s.user, mailbox, int64(uid))
	return err
}

func (s userStore) Delete(mailbox string, uids []imap.UID) error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	tx, err := s.d.sql.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, uid := range uids {
		if _, err := tx.Exec(`DELETE FROM messages WHERE user = ? AND mailbox = ? AND uid = ?`, s.user, mailbox, int64(uid)); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (s userStore) CreateMailbox(name string, uidValidity uint32) error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	_, err := s.d.sql.Exec(`INSERT INTO mailboxes(user, name, uidvalidity) VALUES(?, ?, ?)`, s.user, name, uidValidity)
	return err
}

func (s userStore) DeleteMailbox(name string) error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	tx, err := s.d.sql.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`DELETE FROM messages WHERE user = ? AND mailbox = ?`, s.user, name); err != nil {
		return err
	}
	if _, err := tx.Exec(`DELETE FROM mailboxes WHERE user = ? AND name = ?`, s.user, name); err != nil {
		return err
	}
	return tx.Commit()
}

func (s userStore) RenameMailbox(oldName, newName string) error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	tx, err := s.d.sql.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`UPDATE mailboxes SET name = ? WHERE user = ? AND name = ?`, newName, s.user, oldName); err != nil {
		return err
	}
	if _, err := tx.Exec(`UPDATE messages SET mailbox = ? WHERE user = ? AND mailbox = ?`, newName, s.user, oldName); err != nil {
		return err
	}
	return tx.Commit()
}
