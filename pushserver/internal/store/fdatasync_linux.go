package store

import (
	"os"
	"syscall"
)

// fdatasync syncs f's data (and the metadata needed to read it back), as SQLite does.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
