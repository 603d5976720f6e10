package main

import (
	"database/sql"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bbsim/bbsim/internal/childproc"
)

// stateModes lists the files and directories under dir that others could read.
func stateModes(t *testing.T, dir string) []string {
	t.Helper()
	var open []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if info.Mode().Perm() != want {
			rel, _ := filepath.Rel(dir, p)
			open = append(open, rel+" "+info.Mode().Perm().String())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return open
}

// TestStateIsPrivate runs bbsim with mail, a push and the handset, then looks at every file
// and directory it left in --data, and at the passwords in mail.db; then it makes the state
// look as an older version left it (readable by all, a plain password) and starts again.
func TestStateIsPrivate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	ports := freePorts(t, 8)
	start := func() {
		t.Helper()
		run, _ := startBBSim(t, runArgs(dir, ports)...)
		waitAPI(t, "http://"+ports[7]+"/api/v1/device", `"state": "idling"`, 30*time.Second)
		pushMessage(t, ports[4], "2100000A", "StatePush")
		if out, errOut, code := runBBSim(t, t.Context(), "send", "--smtp", ports[2], "--subject", "StateMail"); code != 0 {
			t.Fatalf("send: %s %s", out, errOut)
		}
		waitAPI(t, "http://"+ports[7]+"/api/v1/messages", "StatePush", 30*time.Second)
		waitAPI(t, "http://"+ports[7]+"/api/v1/messages", "StateMail", 30*time.Second)
		childproc.Stop(run, syscall.SIGTERM, 10*time.Second)
	}
	passwords := func() []string {
		t.Helper()
		db, err := sql.Open("sqlite", filepath.Join(dir, "mail", "mail.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		rows, err := db.Query(`SELECT password FROM users`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var p string
			rows.Scan(&p)
			out = append(out, p)
		}
		return out
	}
	check := func(when string) {
		t.Helper()
		if open := stateModes(t, dir); len(open) > 0 {
			t.Errorf("%s: not private (want dirs 0700, files 0600): %s", when, strings.Join(open, ", "))
		}
		pw := passwords()
		if len(pw) == 0 {
			t.Fatalf("%s: no users in mail.db", when)
		}
		for _, p := range pw {
			if p == "blackberry" || !strings.HasPrefix(p, "pbkdf2-sha256$") {
				t.Errorf("%s: mail.db keeps the password %q, want a hash", when, p)
			}
		}
	}
	start()
	check("first start")

	// As an older version left it.
	db, err := sql.Open("sqlite", filepath.Join(dir, "mail", "mail.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE users SET password = 'blackberry'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if d.IsDir() {
			return os.Chmod(p, 0o755)
		}
		return os.Chmod(p, 0o644)
	})
	start()
	check("after an older version's state")
}
