// Package statedir keeps bbsim's state (stores, journals, keys, logs) private to the user
// who runs it: directories 0700 and files 0600, also when an older version left them
// readable by others.
package statedir

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Mkdir creates dir (and its parents) as 0700 and makes an existing dir 0700.
func Mkdir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state directory %s: %w", dir, err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("make %s private: %w", dir, err)
	}
	return nil
}

// OpenFile opens path with flag (creating it 0600 with O_CREATE) and makes an existing
// file 0600.
func OpenFile(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, fmt.Errorf("make %s private: %w", path, err)
	}
	return f, nil
}

// SQLite prepares path for an SQLite database: created empty as 0600 when missing (SQLite
// then gives its -wal and -shm files the same mode), and an existing one and its -wal and
// -shm made 0600.
func SQLite(path string) error {
	f, err := OpenFile(path, os.O_RDWR|os.O_CREATE)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	f.Close()
	for _, p := range []string{path + "-wal", path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("make %s private: %w", p, err)
		}
	}
	return nil
}

// ErrInUse marks state that another bbsim process holds (see Lock).
var ErrInUse = errors.New("state in use by another bbsim process")

// Lock takes an exclusive lock on the directory dir for as long as the returned file stays
// open, and refuses at once when another process (or another open in this one) holds it,
// so that two bbsim processes never write one store. The lock is on the directory rather
// than on a file in it, since stores are rewritten by renaming a new file over the old one,
// which would leave a file lock on the replaced file. It is the kernel's flock(2): it goes
// with the process, also when killed, so no stale lock file is left to remove.
func Lock(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked by another bbsim process using it; stop that one, or give this one another --data", ErrInUse, dir)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return f, nil
}

// ErrDamaged marks a store bbsim refuses to start on: damaged, emptied or gone.
var ErrDamaged = errors.New("store damaged or missing")

// Afresh is what a refusal tells the user to do.
const Afresh = "to start afresh, run with --reset (which moves the old --data directory aside) or move that directory away yourself"

// keptMark is the file beside a store that says bbsim kept a store there.
func keptMark(path string) string {
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".kept")
}

// CheckKept refuses a store that bbsim kept at path before and that has since vanished
// or been emptied (0 bytes), so that it is never taken for a new, empty one.
func CheckKept(what, path string) error {
	if _, err := os.Stat(keptMark(path)); err != nil {
		return nil // never kept here: a first start
	}
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %s %s has vanished, though bbsim kept one there; %s", ErrDamaged, what, path, Afresh)
	case err != nil:
		return fmt.Errorf("%s %s: %w", what, path, err)
	case info.Size() == 0:
		return fmt.Errorf("%w: %s %s is empty (0 bytes), though bbsim kept one there: it was truncated; %s", ErrDamaged, what, path, Afresh)
	}
	return nil
}

// Keep records that a store now exists at path (see CheckKept).
func Keep(path string) error {
	f, err := OpenFile(keptMark(path), os.O_WRONLY|os.O_CREATE)
	if err != nil {
		return fmt.Errorf("remember %s: %w", path, err)
	}
	return f.Close()
}

// CheckTimeout bounds the integrity check at start: a store too large to check within it
// is opened unchecked.
const CheckTimeout = 20 * time.Second

// CheckSQLite runs SQLite's quick_check on db (every page, index and constraint but no
// index-content cross-check) within CheckTimeout, and refuses a store it finds damaged.
func CheckSQLite(db *sql.DB, what, path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), CheckTimeout)
	defer cancel()
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check(5)")
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("%w: %s %s cannot be read (%v); %s", ErrDamaged, what, path, err, Afresh)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return fmt.Errorf("check %s: %w", path, err)
		}
		if s != "ok" {
			problems = append(problems, s)
		}
	}
	if err := rows.Err(); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s %s is damaged (SQLite quick_check: %s); %s", ErrDamaged, what, path, strings.Join(problems, "; "), Afresh)
	}
	return nil
}

// OpenSQLite opens the SQLite store at path with the DSN query q (pragmas), private to
// the user, refusing one that bbsim kept there and that has vanished, been emptied or is
// damaged. After the caller has set up its schema, Keep(path) remembers it.
func OpenSQLite(what, path, q string) (*sql.DB, error) {
	if err := CheckKept(what, path); err != nil {
		return nil, err
	}
	if err := SQLite(path); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q)
	if err != nil {
		return nil, fmt.Errorf("open %s %s: %w", what, path, err)
	}
	if err := CheckSQLite(db, what, path); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Reset moves dir aside, to dir.old-YYYYMMDD-HHMMSS, so that bbsim starts with empty
// stores; nothing is deleted. It returns where the old state went ("" when there was none).
func Reset(dir string, now time.Time) (string, error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	to := strings.TrimRight(dir, string(filepath.Separator)) + ".old-" + now.Format("20060102-150405")
	if err := os.Rename(dir, to); err != nil {
		return "", fmt.Errorf("reset: move %s aside: %w", dir, err)
	}
	return to, nil
}
