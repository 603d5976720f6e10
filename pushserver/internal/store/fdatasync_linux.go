package store

import (
	"os"
	"runtime"
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

// commitSync is fdatasync for the journal's group commits: with more than one processor
// (GOMAXPROCS), the writer keeps its processor through the call (a raw system call).
// Every initiator's answer waits for the writer, and after an ordinary system call that
// blocks for more than a few microseconds the runtime has given the writer's processor to
// other goroutines: back from the kernel, the writer waits in the global run queue behind
// the request handlers. Under load that made a sync of 0.2 ms take 1.0–1.4 ms while the
// cores went idle (BenchmarkRelayComparison: run medians 0.84 against 0.74, nine pairs
// each). The price: that processor runs nothing else during a sync, and a stop-the-world
// phase of the garbage collector waits for the sync to end. With one processor that would
// stop every goroutine for each sync, so there the ordinary call is made.
func commitSync(f *os.File) error {
	if runtime.GOMAXPROCS(0) < 2 {
		return fdatasync(f)
	}
	for {
		_, _, e := syscall.RawSyscall(syscall.SYS_FDATASYNC, f.Fd(), 0, 0)
		switch e {
		case 0:
			return nil
		case syscall.EINTR:
		default:
			return e
		}
	}
}
