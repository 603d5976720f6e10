package config

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/bbsim/bbsim/internal/radio"
)

// Flag groups a command can register. A command takes the groups it uses.
type Group int

// The flag groups.
const (
	GroupData Group = 1 << iota
	GroupMail
	GroupPush
	GroupDNS
	GroupHandset
	GroupUI
)

// EnvName is the environment variable that sets a flag: BBSIM_ and the flag's name in
// upper case with dashes as underscores (--store-locking: BBSIM_STORE_LOCKING).
func EnvName(flagName string) string {
	return "BBSIM_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// listFlag is a repeatable flag whose values are parsed as they are set, so a bad one is
// refused by name and every value is parsed once. Values from the default or the
// environment are replaced by the first value given on the command line.
type listFlag[T any] struct {
	p         *[]T
	parse     func(string) (T, error)
	show      func(T) string // how --help shows a value (secrets hidden)
	inherited bool
}

// repeatable is a listFlag of any type, for Load.
type repeatable interface {
	reset()
	inherit()
}

func newList[T any](p *[]T, parse func(string) (T, error), show func(T) string) *listFlag[T] {
	return &listFlag[T]{p: p, parse: parse, show: show, inherited: true}
}

func (l *listFlag[T]) String() string {
	if l.p == nil {
		return ""
	}
	var s []string
	for _, x := range *l.p {
		s = append(s, l.show(x))
	}
	return strings.Join(s, " ")
}

func (l *listFlag[T]) Set(s string) error {
	v, err := l.parse(s)
	if err != nil {
		return err
	}
	if l.inherited {
		*l.p = nil
		l.inherited = false
	}
	*l.p = append(*l.p, v)
	return nil
}

func (l *listFlag[T]) reset()   { *l.p = nil }
func (l *listFlag[T]) inherit() { l.inherited = true }

// secretURL is a URL flag whose password --help does not show.
type secretURL struct{ p *string }

func (v secretURL) String() string {
	if v.p == nil || *v.p == "" {
		return ""
	}
	return redactURL(*v.p)
}

func (v secretURL) Set(s string) error { *v.p = s; return nil }

// secretString is a flag whose value --help does not show.
type secretString struct{ p *string }

func (v secretString) String() string {
	if v.p == nil || *v.p == "" {
		return ""
	}
	return "***"
}

func (v secretString) Set(s string) error { *v.p = s; return nil }

func pinSuffix(pin string) string {
	if pin == "" {
		return ""
	}
	return ":" + pin
}

// Register adds the flags of the given groups to fs, bound to c.
func (c *Config) Register(fs *flag.FlagSet, groups Group) {
	if groups&GroupData != 0 {
		fs.StringVar(&c.Data, "data", c.Data, "state directory (mail store, push store, handset journal)")
		fs.BoolVar(&c.Debug, "debug", c.Debug, "debug logging")
		fs.BoolVar(&c.Reset, "reset", c.Reset, "move --data aside (to DATA.old-TIME) and start with empty stores")
		fs.StringVar(&c.LogFile, "log-file", c.LogFile, "log `FILE` (run, handset: default <data>/bbsim.log, warnings also on stderr; server: default stderr)")
	}
	if groups&GroupMail != 0 {
		m := &c.Mail
		fs.StringVar(&m.IMAP, "imap", m.IMAP, "IMAP listen address (empty: off)")
		fs.StringVar(&m.POP3, "pop3", m.POP3, "POP3 listen address (empty: off)")
		fs.StringVar(&m.SMTP, "smtp", m.SMTP, "SMTP listen address (empty: off)")
		fs.StringVar(&m.Webmail, "webmail", m.Webmail, "webmail listen address (empty: off)")
		fs.StringVar(&m.Domain, "domain", m.Domain, "mail domain of the emulated network")
		fs.Var(newList(&m.Users, ParseUser, func(u User) string { return u.Email + ":***" + pinSuffix(u.PIN) }), "user", "mail account `EMAIL:PASSWORD[:PIN]` (repeatable)")
		fs.StringVar(&m.StoreLocking, "store-locking", m.StoreLocking, "message-store locking: exclusive or shared")
		fs.BoolVar(&m.PoliteDisconnect, "polite-disconnect", m.PoliteDisconnect, "send idle IMAP sessions a BYE when a POP3 or webmail session wants the store")
		fs.BoolVar(&m.NoIdle, "no-idle", m.NoIdle, "do not advertise IMAP IDLE")
		fs.BoolVar(&m.NoIMAP, "no-imap", m.NoIMAP, "turn IMAP off")
		fs.IntVar(&m.MaxConnectionsPerUser, "max-connections-per-user", m.MaxConnectionsPerUser, "refuse logins over N per user and protocol (0: no limit)")
	}
	if groups&(GroupMail|GroupPush) != 0 {
		fs.DurationVar(&c.AuthFailureDelay, "auth-failure-delay", c.AuthFailureDelay, "wait this long before answering a failed login (IMAP, POP3, SMTP AUTH, webmail, BIS push; 0: no wait)")
	}
	if groups&GroupPush != 0 {
		p := &c.Push
		fs.StringVar(&p.Addr, "push", p.Addr, "push server listen address (empty: off)")
		fs.Var(newList(&p.Groups, ParseGroup, PushGroup.String), "group", "push group `NAME=PIN,PIN` (repeatable)")
		fs.IntVar(&p.PacketSize, "packet-size", p.PacketSize, "push packet size in bytes")
		fs.DurationVar(&p.FlowControlTimeout, "flow-control-timeout", p.FlowControlTimeout, "how long pushes wait for an unreachable device")
		fs.IntVar(&p.MaxActive, "max-active-connections", p.MaxActive, "pushes pending at once before 503 / PAP 4001")
		fs.IntVar(&p.MaxHeaderBytes, "max-header-bytes", p.MaxHeaderBytes, "request line and header limit (then 414/431)")
		fs.Int64Var(&p.MaxBodyBytes, "max-body-bytes", p.MaxBodyBytes, "push request body limit (then 413)")
		fs.DurationVar(&p.ReadHeaderTimeout, "read-header-timeout", p.ReadHeaderTimeout, "time a push initiator has to send its headers")
		fs.Var(secretURL{&p.DB}, "push-db", "push store `URL`: postgres://… keeps pushes in PostgreSQL, which several gateways may share (empty: SQLite in --data)")
		fs.StringVar(&p.Instance, "push-instance", p.Instance, "this gateway's `name` among those sharing --push-db, which hand pushes to the gateway a handset attaches to (empty: default)")
		fs.Var(newList(&p.Auth, ParseInitiator, func(in Initiator) string { return in.Name + ":***" }), "push-auth", "push initiator `NAME:PASSWORD[:PIN,$group...]` (repeatable; turns push authentication on)")
		fs.Var(newList(&p.Apps, ParsePushApp, func(a PushApp) string { return a.ID + ":***:" + strconv.Itoa(a.Port) }), "push-app", "BIS push application `APPID:PASSWORD:PORT[:CPURL]` (repeatable)")
		fs.Var(newList(&p.ResetDevices, ParseResetDevice, func(s string) string { return s }), "reset-device", "forget the device secret of `PIN` (or all) at start, so that a handset that lost its state may attach again (repeatable)")
	}
	if groups&GroupDNS != 0 {
		fs.StringVar(&c.DNS.Addr, "dns", c.DNS.Addr, "DNS zone listen address, UDP and TCP (empty: off)")
	}
	if groups&GroupHandset != 0 {
		h := &c.Handset
		fs.StringVar(&h.PIN, "pin", h.PIN, "handset PIN (8 hex digits)")
		fs.StringVar(&h.Email, "email", h.Email, "handset e-mail address")
		fs.StringVar(&h.Password, "password", h.Password, "mailbox password")
		fs.StringVar(&h.MailServer, "mail-server", h.MailServer, "mail server HOST:PORT (empty: discover through DNS)")
		fs.StringVar(&h.MailProtocol, "mail-protocol", h.MailProtocol, "auto, imap or pop3")
		fs.StringVar(&h.MailSecurity, "mail-security", h.MailSecurity, "none, starttls or tls")
		fs.StringVar(&h.MailCAFile, "mail-ca-file", h.MailCAFile, "PEM `file` of certificates to trust for the mail server, besides the system's and the bundled server's")
		fs.BoolVar(&h.MailInsecure, "mail-insecure", h.MailInsecure, "accept any mail server certificate (for tests: anyone can pose as the server)")
		fs.StringVar(&h.Resolver, "resolver", h.Resolver, "DNS server used to discover the mail server (default: --dns)")
		fs.StringVar(&h.Gateway, "gateway", h.Gateway, "push gateway URL (empty: no push)")
		fs.DurationVar(&h.GatewayCheck, "gateway-check", h.GatewayCheck, "how often an attached handset asks the gateway whether it still holds the attachment (it attaches again when not)")
		fs.StringVar(&h.Listen, "listen", h.Listen, "push receiver listen address")
		fs.StringVar(&h.API, "api", h.API, "control API listen address (empty: off)")
		fs.IntVar(&h.MaxMessages, "max-messages", h.MaxMessages, "messages (and pushes per app) the handset keeps; when full the oldest read go first, then the oldest")
		fs.Var(secretString{&h.APIToken}, "api-token", "`token` the control API requires (Authorization: Bearer); required when --api is not loopback")
		fs.Var(secretString{&h.ListenToken}, "listen-token", "`token` the push receiver requires (Bearer, or Basic's password; the gateway is told it); required when --listen is not loopback")
		fs.DurationVar(&h.PollInterval, "poll-interval", h.PollInterval, "mail polling interval without IDLE or over POP3")
		fs.StringVar(&h.Software, "device-software", h.Software, "BlackBerry Device Software `version` the handset runs, e.g. 6.0.0.141 (list: the versions bbsim knows and what each changes)")
		h.RegisterRadio(fs)
		fs.Var(newList(&h.Apps, ParseHandsetApp, HandsetApp.String), "app", "push application `APPID:PORT[:CPURL]` on the handset (repeatable)")
	}
	if groups&(GroupHandset|GroupUI) != 0 {
		fs.BoolVar(&c.Handset.Headless, "headless", c.Handset.Headless, "print events as lines instead of drawing the handset")
	}
}

// RegisterRadio adds --radio, --coverage-schedule and --radio-seed, bound to h: the flags
// of every command that runs handsets (handset, run, fleet).
func (h *Handset) RegisterRadio(fs *flag.FlagSet) {
	h.RegisterRadioProfile(fs)
	fs.StringVar(&h.CoverageSchedule, "coverage-schedule", h.CoverageSchedule, "toggle coverage by itself, e.g. \"in 60s, out 20s, repeat\" (a step may be a range: out 10s-30s)")
}

// RegisterRadioProfile adds --radio and --radio-seed, bound to h: the flags of the tools
// that run a handset of their own (lockout, bench).
func (h *Handset) RegisterRadioProfile(fs *flag.FlagSet) {
	fs.StringVar(&h.Radio, "radio", h.Radio, "radio `profile` of the device link and the mail connection: "+strings.Join(radio.Names(), ", ")+
		", optionally with figures changed, e.g. flaky,latency=20ms (docs/radio.md)")
	fs.Uint64Var(&h.RadioSeed, "radio-seed", h.RadioSeed, "seed of the radio's drops and of the schedule's ranges, to repeat a run (0: a new one, shown in the event log)")
}

// Load fills c from the environment and then from args, for the flags registered on fs,
// and validates the result. The environment is read through getenv (os.Getenv when nil).
// After Load, fs's usage shows the effective defaults (environment included).
func (c *Config) Load(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	var envErrs []string
	fs.VisitAll(func(f *flag.Flag) {
		v := getenv(EnvName(f.Name))
		if v == "" {
			return
		}
		values := []string{v}
		if lv, ok := f.Value.(repeatable); ok {
			lv.reset()
			values = strings.Fields(v)
		}
		for _, x := range values {
			if err := f.Value.Set(x); err != nil {
				envErrs = append(envErrs, fmt.Sprintf("%s=%q: %v", EnvName(f.Name), v, err))
				return
			}
		}
		if lv, ok := f.Value.(repeatable); ok {
			lv.inherit()
		}
		f.DefValue = f.Value.String()
	})
	if len(envErrs) > 0 {
		return fmt.Errorf("environment: %s", strings.Join(envErrs, "; "))
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	return c.Validate()
}
