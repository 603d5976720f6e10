package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/bbsim/bbsim/config"
	"github.com/bbsim/bbsim/emulator"
	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/internal/statedir"
)

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("bbsim "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func loadConfig(name string, args []string, groups config.Group, stderr io.Writer) (config.Config, error) {
	cfg := config.Default()
	fs := newFlagSet(name, stderr)
	cfg.Register(fs, groups)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: bbsim %s [flags]\nEvery flag is also BBSIM_<FLAG>; the defaults shown are the effective ones.\n", name)
		config.PrintUsage(fs.Output(), fs, groups)
	}
	if err := cfg.Load(fs, args, nil); err != nil {
		if err == flag.ErrHelp {
			return cfg, err
		}
		if fs.Parsed() {
			return cfg, fmt.Errorf("configuration:\n%w", err)
		}
		return cfg, errUsage
	}
	if cfg.Reset {
		to, err := statedir.Reset(cfg.Data, time.Now())
		if err != nil {
			return cfg, err
		}
		if to != "" {
			fmt.Fprintf(stderr, "bbsim: --reset: moved %s to %s; starting with empty stores\n", cfg.Data, to)
		}
	}
	return cfg, nil
}

func logger(cfg config.Config, w io.Writer) *slog.Logger {
	level := slog.LevelInfo
	if cfg.Debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func cmdServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig("server", args, config.GroupData|config.GroupMail|config.GroupPush|config.GroupDNS, stderr)
	if err != nil {
		return err
	}
	log := logger(cfg, stderr)
	if cfg.LogFile != "" {
		f, err := openLogFile(cfg)
		if err != nil {
			return err
		}
		defer f.Close()
		log = logger(cfg, f)
	}
	e, err := emulator.New(emulator.Options{Config: cfg, Mode: emulator.ModeServer, Logger: log})
	if err != nil {
		return err
	}
	printListeners(stdout, e)
	return e.Run(ctx)
}

// eventLogger is the log of a process that prints events on stdout: the log file gets
// everything (so stdout and the terminal carry events only), stderr the warnings and errors.
func eventLogger(cfg config.Config, stderr io.Writer) (*slog.Logger, func(), error) {
	f, err := openLogFile(cfg)
	if err != nil {
		return nil, nil, err
	}
	level := slog.LevelInfo
	if cfg.Debug {
		level = slog.LevelDebug
	}
	h := slog.NewMultiHandler(
		slog.NewTextHandler(f, &slog.HandlerOptions{Level: level}),
		slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return slog.New(h), func() { f.Close() }, nil
}

// openLogFile opens --log-file (default <data>/bbsim.log) for appending.
func openLogFile(cfg config.Config) (*os.File, error) {
	logPath := cfg.LogFile
	if logPath == "" {
		logPath = filepath.Join(cfg.Data, "bbsim.log")
	}
	// The log names users and servers: private like the state beside it.
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	f, err := statedir.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	return f, nil
}

func cmdHandset(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig("handset", args, config.GroupData|config.GroupHandset, stderr)
	if err != nil {
		return err
	}
	if cfg.Handset.Software == config.SoftwareList {
		return printSoftware(stdout)
	}
	log, closeLog, err := eventLogger(cfg, stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	e, err := emulator.New(emulator.Options{Config: cfg, Mode: emulator.ModeHandset, Logger: log, Events: stdout})
	if err != nil {
		return err
	}
	printListeners(stdout, e)
	return e.Run(ctx)
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig("run", args, config.GroupData|config.GroupMail|config.GroupPush|config.GroupDNS|config.GroupHandset, stderr)
	if err != nil {
		return err
	}
	if cfg.Handset.Software == config.SoftwareList {
		return printSoftware(stdout)
	}
	headless := cfg.Handset.Headless || !isTerminal(stdout)
	if headless {
		log, closeLog, err := eventLogger(cfg, stderr)
		if err != nil {
			return err
		}
		defer closeLog()
		e, err := emulator.New(emulator.Options{Config: cfg, Mode: emulator.ModeRun, Logger: log, Events: stdout})
		if err != nil {
			return err
		}
		printListeners(stdout, e)
		return e.Run(ctx)
	}
	return runUI(ctx, cfg, stdout)
}

// runUI runs everything with the handset drawn in the terminal; logs go to a file.
func runUI(ctx context.Context, cfg config.Config, stdout io.Writer) error {
	lf, err := openLogFile(cfg)
	if err != nil {
		return err
	}
	defer lf.Close()
	e, err := emulator.New(emulator.Options{Config: cfg, Mode: emulator.ModeRun, Logger: logger(cfg, lf)})
	if err != nil {
		return err
	}
	return e.RunWithUI(ctx, os.Stdin, stdout)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func printListeners(w io.Writer, e *emulator.Emulator) {
	for _, l := range e.Listeners() {
		fmt.Fprintf(w, "bbsim: %-8s %s\n", l.Name, l.Addr)
	}
	if f := e.MailCertFile(); f != "" {
		// Self-signed: clients other than the handset must be told to trust it.
		fmt.Fprintf(w, "bbsim: %-8s %s (self-signed; bbsim handset trusts it, other clients take it as a CA file)\n", "tls cert", f)
	}
}

// printSoftware prints the device software versions bbsim knows and what each changes.
func printSoftware(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tBROWSER\tWHAT IT CHANGES")
	for _, v := range handset.KnownSoftware {
		def := ""
		if v.Version == handset.DefaultSoftware {
			def = " [default]"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\n", v.Version, def, v.Browser, v.Changes)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "Any other version from 3.x to 7.x behaves as the nearest one below it.")
	return err
}
