package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/bbsim/bbsim/config"
	"github.com/bbsim/bbsim/internal/radio"
	"github.com/bbsim/bbsim/lockout"
)

// rowsFailed is the exit status of a report (lockout, compat) when a row failed.
type rowsFailed struct {
	what  string
	names []string
}

func (e rowsFailed) Error() string { return e.what + strings.Join(e.names, ", ") }
func (e rowsFailed) ExitCode() int { return 1 }

// printReport prints a report's rows as a table, or as JSON, and fails with the names of
// the rows that did not pass.
func printReport[R any](stdout io.Writer, jsonOut bool, rows []R, table func([]R) string, what string, row func(R) (name string, ok bool)) error {
	if jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return err
		}
	} else {
		fmt.Fprint(stdout, table(rows))
	}
	var bad []string
	for _, r := range rows {
		if name, ok := row(r); !ok {
			bad = append(bad, name)
		}
	}
	if len(bad) > 0 {
		return rowsFailed{what, bad}
	}
	return nil
}

func cmdLockout(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("lockout", stderr)
	var t lockout.Target
	var scenarios string
	var jsonOut, debug bool
	var opts lockout.Options
	fs.StringVar(&t.IMAP, "mail-server", "", "run against this IMAP server `HOST:PORT` instead of the bundled one")
	fs.StringVar(&t.POP3, "pop3-server", "", "with --mail-server: the POP3 server `HOST:PORT`")
	fs.StringVar(&t.SMTP, "smtp-server", "", "with --mail-server: deliver the test mails over SMTP to `HOST:PORT`")
	fs.StringVar(&t.LMTP, "lmtp-server", "", "with --mail-server: deliver the test mails over LMTP to `HOST:PORT`")
	fs.StringVar(&t.Username, "user", "", "with --mail-server: the account's login")
	fs.StringVar(&t.Password, "password", "", "with --mail-server: the account's password")
	fs.StringVar(&t.Email, "email", "", "with --mail-server: the account's address (default --user)")
	fs.StringVar(&scenarios, "scenarios", "", "comma-separated scenarios to run (default all): exclusive, polite-disconnect, shared, no-idle, no-imap")
	fs.DurationVar(&opts.Hold, "hold", 300*time.Millisecond, "how long the POP3 and webmail sessions stay open")
	fs.DurationVar(&opts.Timeout, "timeout", 15*time.Second, "bound of each wait")
	fs.BoolVar(&jsonOut, "json", false, "print the rows as JSON")
	fs.BoolVar(&debug, "debug", false, "log the servers and the handset to stderr")
	rc := config.Handset{Radio: radio.Off}
	rc.RegisterRadioProfile(fs)
	if err := parseTool(fs, args); err != nil {
		return err
	}
	var err error
	if opts.Radio, err = rc.RadioConditions(); err != nil {
		fmt.Fprintf(stderr, "bbsim lockout: %v\n", err)
		return errUsage
	}
	if debug {
		opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if t.IMAP != "" || t.POP3 != "" {
		if t.Username == "" || t.Password == "" {
			return errors.New("--mail-server needs --user and --password")
		}
		opts.Target = &t
	} else {
		dir, err := os.MkdirTemp("", "bbsim-lockout-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		opts.Dir = dir
		if scenarios != "" {
			want := map[string]bool{}
			for _, s := range strings.Split(scenarios, ",") {
				want[strings.TrimSpace(s)] = true
			}
			for _, sc := range lockout.Scenarios() {
				if want[sc.Name] {
					opts.Scenarios = append(opts.Scenarios, sc)
					delete(want, sc.Name)
				}
			}
			for s := range want {
				return fmt.Errorf("unknown scenario %q", s)
			}
		}
	}
	if !opts.Radio.Profile.Off() && !jsonOut {
		fmt.Fprintf(stdout, "The handset's mail connection under radio %s (--radio-seed %d)\n", opts.Radio.Profile, opts.Radio.Seed)
	}
	rows, err := lockout.Run(ctx, opts)
	if err != nil {
		return err
	}
	return printReport(stdout, jsonOut, rows, lockout.Table, "scenario(s) did not behave as expected: ",
		func(r lockout.Row) (string, bool) { return r.Scenario, r.OK() })
}
