// Package handset is the emulated BlackBerry device: its identity, coverage, message list,
// browser channels and cache, push applications and an append-only event stream. It holds
// state and emits events; it opens no sockets and draws nothing. Agents (bisclient,
// browserpush, registration) change it, and the UI and the control API read it.
package handset

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/bbsim/bbsim/rim"
)

// DefaultPIN is the PIN of the default handset.
const DefaultPIN = "2100000A"

// ErrNotFound is returned when a message, channel or app does not exist.
var ErrNotFound = errors.New("not found")

// NormalizePIN returns pin in upper case and reports whether it is 8 hex digits.
func NormalizePIN(pin string) (string, bool) { return rim.NormalizePIN(pin) }

// Options configure a Handset. The zero value is a valid in-memory handset.
type Options struct {
	// PIN is the device PIN, 8 hex digits. Default DefaultPIN.
	PIN string
	// Email is the device's e-mail identity. Default "alice@bbsim.test".
	Email string
	// Dir is the state directory. The handset keeps a journal there, so a restarted
	// handset keeps its messages, channels, apps and sync position. Default "": memory only.
	Dir string
	// Sync makes every journal write wait for the disk (fsync). Default false: a write
	// survives a crash of the process, not of the machine.
	Sync bool
	// EventHistory is how many events are kept for readers. Default 2000.
	EventHistory int
	// MaxMessages caps the message list, and each push app's list of pushes, as a device's
	// storage did: when full, the oldest read message goes first, then the oldest. Default
	// DefaultMaxMessages.
	MaxMessages int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Software is the device software version (see ParseSoftware and KnownSoftware).
	// Default DefaultSoftware.
	Software string
	// DeviceSecret is the device secret a handset without Dir starts with, which its owner
	// kept (see SetDeviceSecret). Default: none, or the journal's with Dir.
	DeviceSecret string
	// KeepSecret is called with every new device secret of a handset without Dir, so that
	// its owner keeps it (a fleet keeps its handsets' in one file). Default: none.
	KeepSecret func(secret string) error
}

// DefaultMaxMessages is how many messages (and pushes per app) a handset keeps by default.
const DefaultMaxMessages = 1000

// Handset is the device state. It is safe for concurrent use.
type Handset struct {
	pin, email string
	now        func() time.Time

	mu        sync.Mutex
	coverage  bool
	covChange chan struct{} // closed and replaced when coverage changes
	mail      MailStatus
	sync      MailSync
	messages  []*Message
	maxMsgs   int
	msgKeys   map[string]string // source key -> message id
	nextID    uint64
	channels  []*Channel
	cache     map[string]*CacheEntry
	apps      []*App

	software Software // set by Options and SetSoftware
	// softwareOption is Options.Software: a change through SetSoftware is journalled with
	// it, and replayed only under the same option.
	softwareOption string
	swChange       chan struct{} // closed and replaced when the software changes
	fetch          PageFetcher

	linkToken  string     // from the gateway's attach answer; not persisted
	link       LinkStatus // not persisted
	secret     string     // the device secret the gateway issued; journaled
	keepSecret func(string) error

	radio        RadioStatus // not persisted
	radioControl RadioControl

	events eventLog
	j      *journal
}

// New opens the handset, replaying its journal from opts.Dir when there is one.
func New(opts Options) (*Handset, error) {
	if opts.PIN == "" {
		opts.PIN = DefaultPIN
	}
	pin, ok := NormalizePIN(opts.PIN)
	if !ok {
		return nil, fmt.Errorf("handset: PIN %q is not 8 hex digits", opts.PIN)
	}
	if opts.Email == "" {
		opts.Email = "alice@bbsim.test"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.EventHistory <= 0 {
		opts.EventHistory = 2000
	}
	if opts.Software == "" {
		opts.Software = DefaultSoftware
	}
	sw, err := ParseSoftware(opts.Software)
	if err != nil {
		return nil, fmt.Errorf("handset: %w", err)
	}
	h := &Handset{
		pin:            pin,
		email:          opts.Email,
		now:            opts.Now,
		coverage:       true,
		covChange:      make(chan struct{}),
		msgKeys:        map[string]string{},
		cache:          map[string]*CacheEntry{},
		mail:           MailStatus{State: MailOff},
		link:           LinkStatus{State: LinkOff},
		software:       sw,
		softwareOption: sw.String(),
		swChange:       make(chan struct{}),
		maxMsgs:        opts.MaxMessages,
		secret:         opts.DeviceSecret,
		keepSecret:     opts.KeepSecret,
	}
	if h.maxMsgs <= 0 {
		h.maxMsgs = DefaultMaxMessages
	}
	h.events.init(opts.EventHistory)
	if opts.Dir != "" {
		j, err := openJournal(opts.Dir, opts.Sync, h.replay)
		if err != nil {
			return nil, err
		}
		h.j = j
		if err := h.compactLocked(); err != nil {
			j.close()
			return nil, err
		}
	}
	return h, nil
}

// Close flushes and closes the journal.
func (h *Handset) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.j == nil {
		return nil
	}
	err := h.j.close()
	h.j = nil
	return err
}

// PIN returns the device PIN (upper-case hex).
func (h *Handset) PIN() string { return h.pin }

// Email returns the device's e-mail identity.
func (h *Handset) Email() string { return h.email }

// Coverage reports whether the device is in radio coverage, and a channel that is closed
// when that changes. Agents select on it to drop or restore their connections.
func (h *Handset) Coverage() (in bool, changed <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.coverage, h.covChange
}

// SetCoverage moves the device in or out of coverage.
func (h *Handset) SetCoverage(in bool) {
	h.mu.Lock()
	if h.coverage == in {
		h.mu.Unlock()
		return
	}
	h.coverage = in
	close(h.covChange)
	h.covChange = make(chan struct{})
	h.mu.Unlock()
	if in {
		h.Emit(EventCoverage, "back in coverage", map[string]string{"coverage": "in"})
	} else {
		h.Emit(EventCoverage, "out of coverage", map[string]string{"coverage": "out"})
	}
}

// Device is the snapshot served as GET /api/v1/device.
type Device struct {
	PIN      string         `json:"pin"`
	Email    string         `json:"email"`
	Coverage string         `json:"coverage"`
	Software SoftwareStatus `json:"software"`
	Radio    RadioStatus    `json:"radio"`
	Mail     MailStatus     `json:"mail"`
	Gateway  LinkStatus     `json:"gateway"`
	Apps     []App          `json:"apps"`
	Unread   int            `json:"unread"`
}

// Device returns a snapshot of the device.
func (h *Handset) Device() Device {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := Device{PIN: h.pin, Email: h.email, Coverage: "out", Mail: h.mail, Gateway: h.link, Apps: h.appsLocked(),
		Software: softwareStatus(h.software), Radio: h.radioLocked()}
	if h.coverage {
		d.Coverage = "in"
	}
	for _, m := range h.messages {
		if !m.Read {
			d.Unread++
		}
	}
	return d
}

// SetLinkToken records the token the push gateway issued when the device attached. The
// device presents it on requests the network must attribute to this device (BIS-Push
// registration), as a real handset's traffic was attributed by its radio link.
func (h *Handset) SetLinkToken(tok string) {
	h.mu.Lock()
	h.linkToken = tok
	h.mu.Unlock()
}

// LinkToken returns the current device-link token ("" when not attached).
func (h *Handset) LinkToken() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.linkToken
}

// SetDeviceSecret records the device's secret, its proof of identity on every attach,
// detach and ack (the gateway adopts or issues it at the PIN's first attach). It is kept in
// the journal (or given to Options.KeepSecret) before it is used, and Reset keeps it; when
// keeping it fails, it is used all the same and the error returned.
func (h *Handset) SetDeviceSecret(secret string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if secret == h.secret {
		return nil
	}
	var err error
	if h.j != nil {
		err = h.writeLocked(recDeviceSecret, secret)
	} else if h.keepSecret != nil {
		err = h.keepSecret(secret)
	}
	h.secret = secret
	return err
}

// DeviceSecret returns the device secret the push gateway issued ("" before the first
// attach).
func (h *Handset) DeviceSecret() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.secret
}
