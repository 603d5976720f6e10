// Package emulator composes bbsim: it binds every listener first (so a busy port fails
// before anything is drawn), builds the bundled servers, the handset and its agents, and
// runs them in one errgroup whose first failure stops them all, shutting down within a
// bounded time.
package emulator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/bbsim/bbsim/config"
	"github.com/bbsim/bbsim/controlapi"
	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/internal/httpguard"
	"github.com/bbsim/bbsim/internal/statedir"
	"github.com/bbsim/bbsim/internal/termtext"
	"github.com/bbsim/bbsim/ui"
)

// ShutdownTimeout bounds how long components get to stop.
const ShutdownTimeout = 5 * time.Second

// Mode says which parts of bbsim a process runs.
type Mode int

// The modes of the bbsim subcommands.
const (
	ModeServer  Mode = 1 << iota // bundled servers
	ModeHandset                  // one handset and its agents
	ModeRun     = ModeServer | ModeHandset
)

// Options configure an Emulator.
type Options struct {
	Config config.Config
	Mode   Mode
	// Logger is the process log. Default: discard.
	Logger *slog.Logger
	// Events receives the handset's events as lines (headless mode). Default: none.
	Events io.Writer
}

// Emulator is a composed bbsim process.
type Emulator struct {
	cfg   config.Config
	mode  Mode
	log   *slog.Logger
	lns   map[string]net.Listener
	pcs   map[string]net.PacketConn
	comps []component
	out   io.Writer
	// closers release what the components hold (stores), after they have stopped.
	closers []func() error
	// openers open what servers need before they serve (the push store), in Run.
	openers []func(ctx context.Context) error

	// Handset is the emulated device (nil in server mode).
	Handset *handset.Handset
}

// component is one server or agent: run blocks until it stops; stop asks it to.
type component struct {
	name string
	run  func(ctx context.Context) error
	stop func(ctx context.Context) error
	// agent: a client of the servers (not one of them), stopped before they are.
	agent bool
}

// ErrPortBusy marks a listener that could not be bound.
var ErrPortBusy = errors.New("address in use")

// New binds every listener the configuration asks for and builds the components. On
// error, nothing is left open.
func New(opts Options) (_ *Emulator, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Emulator{cfg: opts.Config, mode: opts.Mode, log: opts.Logger, lns: map[string]net.Listener{},
		pcs: map[string]net.PacketConn{}, out: opts.Events}
	defer func() {
		if err != nil {
			e.closeAll()
			e.release()
		}
	}()
	if err := e.bind(); err != nil {
		return nil, err
	}
	if err := statedir.Mkdir(e.cfg.Data); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if e.mode&ModeServer != 0 {
		if err := e.buildServers(); err != nil {
			return nil, err
		}
	}
	if e.mode&ModeHandset != 0 {
		if err := e.buildHandset(); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// bind opens every listener first, naming the flag that moves a busy one.
func (e *Emulator) bind() error {
	type want struct {
		flag, addr string
		udp        bool
	}
	var wants []want
	c := e.cfg
	if e.mode&ModeServer != 0 {
		if !c.Mail.NoIMAP {
			wants = append(wants, want{flag: "imap", addr: c.Mail.IMAP})
		}
		wants = append(wants,
			want{flag: "pop3", addr: c.Mail.POP3},
			want{flag: "smtp", addr: c.Mail.SMTP},
			want{flag: "webmail", addr: c.Mail.Webmail},
			want{flag: "push", addr: c.Push.Addr},
			want{flag: "dns", addr: c.DNS.Addr},
			want{flag: "dns", addr: c.DNS.Addr, udp: true},
		)
	}
	if e.mode&ModeHandset != 0 {
		wants = append(wants, want{flag: "listen", addr: c.Handset.Listen}, want{flag: "api", addr: c.Handset.API})
	}
	var errs []error
	for _, w := range wants {
		if w.addr == "" {
			continue
		}
		if w.udp {
			// The DNS zone takes UDP on the port TCP got (which matters when it is :0).
			ln, ok := e.lns["dns"]
			if !ok {
				continue // TCP could not bind: that error names the flag once
			}
			addr := ln.Addr().String()
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				errs = append(errs, busy(w.flag, addr, err))
				continue
			}
			e.pcs[w.flag] = pc
			continue
		}
		ln, err := net.Listen("tcp", w.addr)
		if err != nil {
			errs = append(errs, busy(w.flag, w.addr, err))
			continue
		}
		e.lns[w.flag] = ln
		warnBeyondLoopback(e.log, w.flag, w.addr)
	}
	return errors.Join(errs...)
}

// beyondLoopback says, per listener, what still guards it when other machines can reach it.
var beyondLoopback = map[string]string{
	"imap":    "mail accounts' passwords only; plain text unless the client uses STARTTLS",
	"pop3":    "mail accounts' passwords only; plain text unless the client uses STLS",
	"smtp":    "nothing: it takes mail for local users from anyone",
	"webmail": "mail accounts' passwords only, over plain HTTP",
	"push":    "nothing unless --push-auth is given",
	"dns":     "nothing: it answers anyone",
	"listen":  "--listen-token",
	"api":     "--api-token",
}

// warnBeyondLoopback logs a warning for a listener other machines can reach: bbsim is an
// emulator, and listening beyond loopback should be a decision.
func warnBeyondLoopback(log *slog.Logger, flag, addr string) {
	if httpguard.IsLoopback(addr) {
		return
	}
	log.Warn("listening beyond loopback: other machines can reach it", "listener", "--"+flag, "addr", addr,
		"guarded_by", beyondLoopback[flag])
}

func busy(flag, addr string, err error) error {
	return fmt.Errorf("%w: cannot listen on %s for --%s (%v); move it with --%s HOST:PORT or %s",
		ErrPortBusy, addr, flag, unwrapOp(err), flag, config.EnvName(flag))
}

func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// Addr returns the bound address of the listener for a flag ("imap", "push", "api", ...),
// or "" when it is off.
func (e *Emulator) Addr(flag string) string {
	if ln, ok := e.lns[flag]; ok {
		return ln.Addr().String()
	}
	return ""
}

func (e *Emulator) add(c component) { e.comps = append(e.comps, c) }

// addServer adds a server that serves on a listener and stops with Shutdown.
func (e *Emulator) addServer(name string, serve func() error, shutdown func(context.Context) error) {
	e.add(component{name: name, run: func(context.Context) error {
		err := serve()
		if isClosed(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}, stop: shutdown})
}

// addAgent adds an agent that runs until its context ends.
func (e *Emulator) addAgent(name string, run func(ctx context.Context) error) {
	e.add(component{name: name, run: func(ctx context.Context) error {
		if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}, agent: true})
}

func isClosed(err error) bool {
	// Every server's ErrServerClosed is http.ErrServerClosed.
	return err == nil || errors.Is(err, http.ErrServerClosed)
}

func (e *Emulator) buildHandset() error {
	c := e.cfg.Handset
	if err := statedir.Mkdir(filepath.Join(e.cfg.Data, "handset")); err != nil {
		return err
	}
	h, err := handset.New(handset.Options{PIN: c.PIN, Email: c.Email, Software: c.Software, MaxMessages: c.MaxMessages, Dir: filepath.Join(e.cfg.Data, "handset", strings.ToUpper(c.PIN))})
	if err != nil {
		return err
	}
	e.Handset = h
	if ln, ok := e.lns["api"]; ok {
		api := controlapi.New(h, controlapi.Options{Logger: e.log, Token: e.cfg.Handset.APIToken})
		e.addServer("control api", func() error { return api.Serve(ln) }, api.Shutdown)
	}
	if e.out != nil {
		// A restarted handset prints only what is new: from the events it has now.
		start := h.LastEventSeq()
		e.addAgent("event printer", func(ctx context.Context) error { return printEvents(ctx, h, e.out, start) })
	}
	return e.buildAgents()
}

// PrintEvents writes the handset's events to w as lines until ctx ends.
func PrintEvents(ctx context.Context, h *handset.Handset, w io.Writer) error {
	return printEvents(ctx, h, w, h.LastEventSeq())
}

func printEvents(ctx context.Context, h *handset.Handset, w io.Writer, after uint64) error {
	for {
		ev, err := h.WaitEvents(ctx, after)
		if err != nil {
			return nil
		}
		for _, e := range ev {
			fmt.Fprintln(w, FormatEvent(e))
			after = e.Seq
		}
	}
}

// FormatEvent renders an event as one line: time, kind, text. The text often comes from
// outside (a mail's subject, a push's title): its control characters are removed.
func FormatEvent(e handset.Event) string {
	return fmt.Sprintf("%s %-16s %s", e.At.Local().Format("15:04:05.000"), termtext.Line(e.Kind), termtext.Line(e.Text))
}

// Run runs every component until ctx ends or one fails, then stops them all within
// ShutdownTimeout.
func (e *Emulator) Run(ctx context.Context) error {
	// The servers' stores open first, bounded by ctx. What they start lives until the
	// servers have been shut down, after the agents, which still talk to them: so its
	// context ends when Run returns, not with ctx.
	life, endLife := context.WithCancel(context.WithoutCancel(ctx))
	defer endLife()
	opening := context.AfterFunc(ctx, endLife)
	for _, open := range e.openers {
		if err := open(life); err != nil {
			opening()
			e.closeAll()
			e.release()
			return err
		}
	}
	opening()
	g, gctx := errgroup.WithContext(ctx)
	agents := make(chan string, len(e.comps))
	nagents := 0
	for _, c := range e.comps {
		if c.agent {
			nagents++
			g.Go(func() error {
				defer func() { agents <- c.name }()
				return c.run(gctx)
			})
			continue
		}
		g.Go(func() error { return c.run(gctx) })
	}
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
		defer cancel()
		// Agents first, while the servers still answer: the handset detaches from the
		// gateway and logs out of its mailbox before either goes away.
		for range nagents {
			select {
			case n := <-agents:
				e.log.Debug("stopped", "component", n)
			case <-sctx.Done():
			}
		}
		var errs []error
		for i := len(e.comps) - 1; i >= 0; i-- {
			if c := e.comps[i]; c.stop != nil {
				if err := c.stop(sctx); err != nil && !isClosed(err) && !errors.Is(err, context.DeadlineExceeded) {
					errs = append(errs, fmt.Errorf("stop %s: %w", c.name, err))
				}
			}
		}
		e.closeAll()
		return errors.Join(errs...)
	})
	err := g.Wait()
	e.release()
	return err
}

// release releases what the components hold, once they have stopped.
func (e *Emulator) release() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
	if e.Handset != nil {
		e.Handset.Close()
	}
}

func (e *Emulator) closeAll() {
	for _, ln := range e.lns {
		ln.Close()
	}
	for _, pc := range e.pcs {
		pc.Close()
	}
}

// Listener is a bound address, for printing.
type Listener struct{ Name, Addr string }

// Listeners lists the bound listeners in a stable order.
func (e *Emulator) Listeners() []Listener {
	var out []Listener
	for _, name := range []string{"imap", "pop3", "smtp", "webmail", "push", "dns", "listen", "api"} {
		if a := e.Addr(name); a != "" {
			out = append(out, Listener{Name: name, Addr: a})
		}
	}
	return out
}

// RunWithUI runs the components with the handset drawn on the terminal; quitting the UI
// stops everything.
func (e *Emulator) RunWithUI(ctx context.Context, in io.Reader, out io.Writer) error {
	if e.Handset == nil {
		return errors.New("no handset to draw")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- e.Run(ctx) }()
	var servers []ui.Server
	for _, l := range e.Listeners() {
		servers = append(servers, ui.Server{Name: l.Name, Addr: l.Addr})
	}
	if f := e.MailCertFile(); f != "" {
		servers = append(servers, ui.Server{Name: "tls cert", Addr: f})
	}
	uiErr := ui.Run(ctx, e.Handset, ui.Options{Servers: servers, Logger: e.log, SMTP: e.Addr("smtp"), PushURL: e.gateway()}, in, out)
	cancel()
	runErr := <-errc
	if uiErr != nil {
		return uiErr
	}
	return runErr
}
