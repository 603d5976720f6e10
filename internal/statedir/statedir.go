// Package statedir keeps bbsim's state (stores, journals, keys, logs) private to the user
// who runs it: directories 0700 and files 0600, also when an older version left them
// readable by others.
package statedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
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
