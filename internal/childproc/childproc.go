// Package childproc ends the outside servers tests start (Dovecot, PostgreSQL).
package childproc

import (
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Stop asks cmd's process to end with sig and waits for it; after grace it kills the
// process and, when it leads a process group, the whole group.
func Stop(cmd *exec.Cmd, sig os.Signal, grace time.Duration) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		if syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) != nil {
			cmd.Process.Kill()
		}
		<-done
	}
}
