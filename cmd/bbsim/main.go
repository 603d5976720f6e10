// Command bbsim is a BlackBerry handset emulator with its own small mail and push servers.
//
// Usage: bbsim <command> [flags]. Run "bbsim help" for the commands and
// "bbsim <command> -h" for a command's flags, with their effective values.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"run", "the bundled servers and one handset, drawn in the terminal", cmdRun},
		{"server", "the bundled mail, push and DNS servers only", cmdServer},
		{"handset", "one handset against given servers", cmdHandset},
		{"push", "a push initiator: RIM push, PAP or the BIS push API", cmdPush},
		{"lockout", "reproduce the BIS IDLE lockout and its resolutions", cmdLockout},
		{"compat", "send one push to handsets of several device software versions and report what each showed", cmdCompat},
		{"fleet", "many headless handsets in one process", cmdFleet},
		{"send", "deliver a test mail over SMTP", cmdSend},
		{"version", "print the version, commit and Go version of this build", cmdVersion},
		{"wait", "wait until the handset shows a message, channel, app or event", cmdWait},
		{"bench", "measure the performance figures", cmdBench},
	}
}

// errUsage means the command line was wrong and the usage has been printed.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "bbsim: %v\n", err)
		var ec exitCoder
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}

// exitCoder is an error that chooses the exit status.
type exitCoder interface{ ExitCode() int }

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return nil
	}
	if args[0] == "--version" || args[0] == "-version" {
		return cmdVersion(ctx, nil, stdout, stderr)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "bbsim: unknown command %q\n\n", args[0])
	usage(stderr)
	return errUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "bbsim: a BlackBerry handset emulator with its own mail and push servers")
	fmt.Fprintln(w, "\nUsage: bbsim <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery flag can also be set as BBSIM_<FLAG> (for example BBSIM_IMAP=127.0.0.1:1143);")
	fmt.Fprintln(w, "a flag on the command line wins. \"bbsim <command> -h\" shows the effective values.")
}
