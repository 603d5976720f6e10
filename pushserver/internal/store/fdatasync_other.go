//go:build !linux

package store

import "os"

func fdatasync(f *os.File) error { return f.Sync() }

// commitSync is fdatasync for the journal's group commits.
func commitSync(f *os.File) error { return f.Sync() }
