// Package config holds bbsim's settings: nested per component, filled from defaults, then
// BBSIM_* environment variables, then command-line flags (a flag given on the command line
// wins), and checked by one validation that reports every problem at once.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bbsim/bbsim/bisclient"
	"github.com/bbsim/bbsim/browserpush"
	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/internal/httpguard"
	"github.com/bbsim/bbsim/internal/radio"
	"github.com/bbsim/bbsim/mailserver"
	"github.com/bbsim/bbsim/pushserver"
	"github.com/bbsim/bbsim/rim"
)

// Config is the whole configuration of one bbsim process.
type Config struct {
	// Data is the state directory. Default: $XDG_STATE_HOME/bbsim or ~/.local/state/bbsim.
	Data    string
	Mail    Mail
	Push    Push
	DNS     DNS
	Handset Handset
	// LogFile receives the log while the terminal UI owns the screen. Default <Data>/bbsim.log.
	LogFile string
	// Debug turns on debug logging.
	Debug bool
	// Reset moves Data aside before starting, so that the stores start empty.
	Reset bool
	// AuthFailureDelay is how long a failed login waits before its answer (IMAP, POP3, SMTP
	// AUTH, webmail, BIS push Basic), as Dovecot's auth_failure_delay. Default 2s.
	AuthFailureDelay time.Duration
}

// Mail is the bundled mail server.
type Mail struct {
	IMAP, POP3, SMTP, Webmail string // listen addresses
	Domain                    string
	Users                     []User
	StoreLocking              string // exclusive | shared
	PoliteDisconnect          bool
	NoIdle                    bool
	NoIMAP                    bool
	MaxConnectionsPerUser     int
}

// User is a mail account, and the handset PIN that goes with it.
type User struct {
	Email, Password, PIN string
}

// Push is the bundled push server.
type Push struct {
	Addr               string
	Groups             []PushGroup // NAME=PIN,PIN
	PacketSize         int
	FlowControlTimeout time.Duration
	MaxActive          int
	MaxHeaderBytes     int
	MaxBodyBytes       int64
	ReadHeaderTimeout  time.Duration
	DB                 string      // postgres://… for a PostgreSQL push store; empty: SQLite in Data
	Instance           string      // this gateway's name among those sharing DB; empty: "default"
	Auth               []Initiator // NAME:PASSWORD[:PIN,$group...]
	Apps               []PushApp   // APPID:PASSWORD:PORT[:CPURL]
	// ResetDevices are PINs, or "all", whose device secrets the gateway forgets as it starts.
	ResetDevices []string
}

// DNS is the bundled DNS zone.
type DNS struct {
	Addr string
}

// Handset is one emulated handset.
type Handset struct {
	PIN          string
	Email        string
	Password     string
	MailServer   string // host:port; empty = discover through DNS
	MailProtocol string // auto | imap | pop3
	MailSecurity string // none | starttls | tls
	MailCAFile   string // PEM certificates trusted besides the system's (and the bundled server's)
	MailInsecure bool   // accept any mail server certificate (tests)
	Resolver     string // DNS server for discovery; default the bundled zone
	Gateway      string // push gateway URL
	Listen       string // push receiver
	API          string // control API
	APIToken     string // required of control API requests when set; needed beyond loopback
	MaxMessages  int    // messages (and pushes per app) kept; the oldest read go first
	ListenToken  string // required of pushes to the receiver when set; needed beyond loopback
	Headless     bool
	PollInterval time.Duration
	GatewayCheck time.Duration // how often an attached handset checks its attachment
	Apps         []HandsetApp  // APPID:PORT[:CPURL]
	Software     string        // device software version; "list" lists the known ones
	// Radio is the radio profile of the device link and the mail connection,
	// NAME[,KEY=VALUE...] (internal/radio); "off": none, and nothing is wrapped.
	Radio string
	// CoverageSchedule toggles coverage by itself, e.g. "in 60s, out 20s, repeat".
	CoverageSchedule string
	// RadioSeed makes the radio's drops and drawn schedule times repeatable; 0: a new
	// seed each run, shown in the event log and on the control API.
	RadioSeed uint64
}

// SoftwareList, given as --device-software, asks for the list of known versions.
const SoftwareList = "list"

// DefaultUser is the account that exists when no --user is given: the mail server's.
var DefaultUser = User(mailserver.DefaultUser)

// Default returns the configuration with every default filled in.
func Default() Config {
	return Config{
		Data:             DefaultDataDir(),
		AuthFailureDelay: mailserver.DefaultAuthFailureDelay,
		Mail: Mail{
			IMAP: "127.0.0.1:1143", POP3: "127.0.0.1:1110", SMTP: "127.0.0.1:2525", Webmail: "127.0.0.1:8025",
			Domain: mailserver.DefaultDomain, Users: []User{DefaultUser}, StoreLocking: string(mailserver.LockExclusive),
		},
		Push: Push{
			Addr: "127.0.0.1:8080", PacketSize: pushserver.DefaultPacketSize,
			FlowControlTimeout: pushserver.DefaultFlowControlTimeout, MaxActive: pushserver.DefaultMaxActive,
			MaxHeaderBytes: pushserver.DefaultMaxHeaderBytes, MaxBodyBytes: pushserver.DefaultMaxBodyBytes,
			ReadHeaderTimeout: pushserver.DefaultReadHeaderTimeout,
		},
		DNS: DNS{Addr: "127.0.0.1:1053"},
		Handset: Handset{
			PIN: DefaultUser.PIN, Email: DefaultUser.Email, Password: DefaultUser.Password,
			MailProtocol: "auto", MailSecurity: "none", Gateway: "http://127.0.0.1:8080",
			Listen: "127.0.0.1:7874", API: "127.0.0.1:7880", PollInterval: bisclient.DefaultPollInterval,
			GatewayCheck: browserpush.DefaultCheckEvery, Software: handset.DefaultSoftware,
			MaxMessages: handset.DefaultMaxMessages, Radio: radio.Off,
		},
	}
}

// DefaultDataDir is the per-user state directory.
func DefaultDataDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "bbsim")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "bbsim")
	}
	return filepath.Join(os.TempDir(), "bbsim")
}

// ParseResetDevice parses a --reset-device value: a PIN (upper-cased) or "all".
func ParseResetDevice(s string) (string, error) {
	if strings.EqualFold(strings.TrimSpace(s), "all") {
		return "all", nil
	}
	pin, ok := rim.NormalizePIN(s)
	if !ok {
		return "", fmt.Errorf("reset device %q: want a PIN (8 hex digits) or all", s)
	}
	return pin, nil
}

// ParseUser parses EMAIL:PASSWORD[:PIN].
func ParseUser(s string) (User, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return User{}, fmt.Errorf("user %q: want EMAIL:PASSWORD[:PIN]", s)
	}
	u := User{Email: parts[0], Password: parts[1]}
	if !strings.Contains(u.Email, "@") {
		return User{}, fmt.Errorf("user %q: %q is not an e-mail address", s, u.Email)
	}
	if len(parts) == 3 {
		pin, ok := rim.NormalizePIN(parts[2])
		if !ok {
			return User{}, fmt.Errorf("user %q: PIN %q is not 8 hex digits", s, parts[2])
		}
		u.PIN = pin
	}
	return u, nil
}

// String formats the user as EMAIL:PASSWORD[:PIN].
func (u User) String() string {
	s := u.Email + ":" + u.Password
	if u.PIN != "" {
		s += ":" + u.PIN
	}
	return s
}

// PushApp is a push application configured on the push service.
type PushApp struct {
	ID, Password string
	Port         int
	CPURL        string
}

// ParsePushApp parses APPID:PASSWORD:PORT[:CPURL] (the CP URL may itself contain colons).
func ParsePushApp(s string) (PushApp, error) {
	parts := strings.SplitN(s, ":", 4)
	if len(parts) < 3 || parts[0] == "" || parts[1] == "" {
		return PushApp{}, fmt.Errorf("push app %q: want APPID:PASSWORD:PORT[:CPURL]", s)
	}
	port, err := strconv.Atoi(parts[2])
	if err != nil || port <= 0 || port > 65535 {
		return PushApp{}, fmt.Errorf("push app %q: port %q is not 1-65535", s, parts[2])
	}
	a := PushApp{ID: parts[0], Password: parts[1], Port: port}
	if len(parts) == 4 {
		if err := checkURL(parts[3]); err != nil {
			return PushApp{}, fmt.Errorf("push app %q: %w", s, err)
		}
		a.CPURL = parts[3]
	}
	return a, nil
}

// HandsetApp is a push application declared on the handset.
type HandsetApp struct {
	ID    string
	Port  int
	CPURL string
}

// String formats the app as APPID:PORT[:CPURL].
func (a HandsetApp) String() string {
	s := a.ID + ":" + strconv.Itoa(a.Port)
	if a.CPURL != "" {
		s += ":" + a.CPURL
	}
	return s
}

// ParseHandsetApp parses APPID:PORT[:CPURL].
func ParseHandsetApp(s string) (HandsetApp, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) < 2 || parts[0] == "" {
		return HandsetApp{}, fmt.Errorf("app %q: want APPID:PORT[:CPURL]", s)
	}
	port, err := strconv.Atoi(parts[1])
	if err != nil || port <= 0 || port > 65535 {
		return HandsetApp{}, fmt.Errorf("app %q: port %q is not 1-65535", s, parts[1])
	}
	a := HandsetApp{ID: parts[0], Port: port}
	if len(parts) == 3 {
		if err := checkURL(parts[2]); err != nil {
			return HandsetApp{}, fmt.Errorf("app %q: %w", s, err)
		}
		a.CPURL = parts[2]
	}
	return a, nil
}

// Initiator is a push initiator allowed to push when push authentication is on.
type Initiator struct {
	Name, Password string
	Allowed        []string // PINs and $groups; empty = anyone
}

// ParseInitiator parses NAME:PASSWORD[:PIN,$group...].
func ParseInitiator(s string) (Initiator, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return Initiator{}, fmt.Errorf("push auth %q: want NAME:PASSWORD[:PIN,$group...]", s)
	}
	in := Initiator{Name: parts[0], Password: parts[1]}
	if len(parts) == 3 && parts[2] != "" {
		for _, a := range strings.Split(parts[2], ",") {
			if a = strings.TrimSpace(a); a != "" {
				in.Allowed = append(in.Allowed, a)
			}
		}
	}
	return in, nil
}

// PushGroup is a push group: a name initiators address as "$NAME", and its PINs.
type PushGroup struct {
	Name string
	PINs []string
}

// String formats the group as NAME=PIN,PIN.
func (g PushGroup) String() string { return g.Name + "=" + strings.Join(g.PINs, ",") }

// ParseGroup parses NAME=PIN,PIN.
func ParseGroup(s string) (PushGroup, error) {
	name, list, ok := strings.Cut(s, "=")
	name = strings.TrimPrefix(strings.TrimSpace(name), "$")
	if !ok || name == "" || list == "" {
		return PushGroup{}, fmt.Errorf("group %q: want NAME=PIN,PIN", s)
	}
	g := PushGroup{Name: name}
	for _, p := range strings.Split(list, ",") {
		pin, ok := rim.NormalizePIN(p)
		if !ok {
			return PushGroup{}, fmt.Errorf("group %q: PIN %q is not 8 hex digits", s, p)
		}
		g.PINs = append(g.PINs, pin)
	}
	return g, nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

func checkAddr(flag, addr string, optional bool) error {
	if addr == "" {
		if optional {
			return nil
		}
		return fmt.Errorf("--%s: an address is required", flag)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--%s %q: want HOST:PORT", flag, addr)
	}
	_ = host
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("--%s %q: port is not 0-65535", flag, addr)
	}
	return nil
}

// Validate reports every problem in the configuration at once.
func (c Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if c.Data == "" {
		add(errors.New("--data: a state directory is required"))
	}
	add(checkAddr("imap", c.Mail.IMAP, true))
	add(checkAddr("pop3", c.Mail.POP3, true))
	add(checkAddr("smtp", c.Mail.SMTP, true))
	add(checkAddr("webmail", c.Mail.Webmail, true))
	add(checkAddr("push", c.Push.Addr, true))
	add(checkAddr("dns", c.DNS.Addr, true))
	add(checkAddr("listen", c.Handset.Listen, true))
	add(checkAddr("api", c.Handset.API, true))
	add(checkAddr("mail-server", c.Handset.MailServer, true))
	if c.Handset.MaxMessages < 1 {
		add(fmt.Errorf("--max-messages %d: must be 1 or more", c.Handset.MaxMessages))
	}
	// The control API and the receiver act as the device: beyond loopback only with a token.
	if c.Handset.API != "" && !httpguard.IsLoopback(c.Handset.API) && c.Handset.APIToken == "" {
		add(fmt.Errorf("--api %s listens beyond loopback: give --api-token (or BBSIM_API_TOKEN), which every request must then carry", c.Handset.API))
	}
	if c.Handset.Listen != "" && !httpguard.IsLoopback(c.Handset.Listen) && c.Handset.ListenToken == "" {
		add(fmt.Errorf("--listen %s listens beyond loopback: give --listen-token (or BBSIM_LISTEN_TOKEN), which every push must then carry", c.Handset.Listen))
	}
	add(checkAddr("resolver", c.Handset.Resolver, true))
	if l := mailserver.Locking(c.Mail.StoreLocking); l != mailserver.LockExclusive && l != mailserver.LockShared {
		add(fmt.Errorf("--store-locking %q: want exclusive or shared", c.Mail.StoreLocking))
	}
	if c.Mail.MaxConnectionsPerUser < 0 {
		add(fmt.Errorf("--max-connections-per-user %d: must be 0 (no limit) or more", c.Mail.MaxConnectionsPerUser))
	}
	if c.Mail.Domain == "" {
		add(errors.New("--domain: a mail domain is required"))
	}
	if len(c.Mail.Users) == 0 {
		add(errors.New("--user: at least one user is required"))
	}
	if c.Push.PacketSize < 256 {
		add(fmt.Errorf("--packet-size %d: must be at least 256 bytes", c.Push.PacketSize))
	}
	if c.Push.FlowControlTimeout <= 0 {
		add(fmt.Errorf("--flow-control-timeout %v: must be positive", c.Push.FlowControlTimeout))
	}
	if c.Push.MaxActive <= 0 {
		add(fmt.Errorf("--max-active-connections %d: must be positive", c.Push.MaxActive))
	}
	if c.Push.MaxHeaderBytes < 512 {
		add(fmt.Errorf("--max-header-bytes %d: must be at least 512", c.Push.MaxHeaderBytes))
	}
	if c.Push.MaxBodyBytes <= 0 {
		add(fmt.Errorf("--max-body-bytes %d: must be positive", c.Push.MaxBodyBytes))
	}
	if db := c.Push.DB; db != "" && !strings.HasPrefix(db, "postgres://") && !strings.HasPrefix(db, "postgresql://") {
		add(fmt.Errorf("--push-db %q: want a postgres:// or postgresql:// URL, or nothing for SQLite in --data", redactURL(db)))
	}
	if c.Push.Instance != "" && c.Push.DB == "" {
		add(fmt.Errorf("--push-instance %q: names a gateway among those sharing a --push-db database; there is none", c.Push.Instance))
	}
	if _, ok := rim.NormalizePIN(c.Handset.PIN); !ok {
		add(fmt.Errorf("--pin %q: want 8 hex digits", c.Handset.PIN))
	}
	if !strings.Contains(c.Handset.Email, "@") {
		add(fmt.Errorf("--email %q: not an e-mail address", c.Handset.Email))
	}
	switch c.Handset.MailProtocol {
	case "auto", "imap", "pop3":
	default:
		add(fmt.Errorf("--mail-protocol %q: want auto, imap or pop3", c.Handset.MailProtocol))
	}
	switch c.Handset.MailSecurity {
	case "none", "starttls", "tls":
	default:
		add(fmt.Errorf("--mail-security %q: want none, starttls or tls", c.Handset.MailSecurity))
	}
	if f := c.Handset.MailCAFile; f != "" {
		if _, err := os.Stat(f); err != nil {
			add(fmt.Errorf("--mail-ca-file: %w", err))
		}
	}
	if c.Handset.Gateway != "" {
		if err := checkURL(c.Handset.Gateway); err != nil {
			add(fmt.Errorf("--gateway: %w", err))
		}
	}
	if c.Handset.GatewayCheck <= 0 {
		add(fmt.Errorf("--gateway-check %v: must be positive", c.Handset.GatewayCheck))
	}
	if c.Handset.PollInterval <= 0 {
		add(fmt.Errorf("--poll-interval %v: must be positive", c.Handset.PollInterval))
	}
	add(c.Handset.CheckRadio())
	if c.Handset.Software != SoftwareList {
		if _, err := handset.ParseSoftware(c.Handset.Software); err != nil {
			add(fmt.Errorf("--device-software: %w", err))
		}
	}
	return errors.Join(errs...)
}

// CheckRadio checks --radio and --coverage-schedule.
func (h Handset) CheckRadio() error {
	_, err := h.RadioConditions()
	return err
}

// RadioConditions are the radio conditions --radio, --coverage-schedule and --radio-seed
// ask for.
func (h Handset) RadioConditions() (radio.Conditions, error) {
	return radio.ParseConditions(h.Radio, h.CoverageSchedule, h.RadioSeed)
}

// redactURL hides the password of a URL for messages.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}
