// Package store keeps the push gateway's pushes, their recipients' states and the device
// directory: in SQLite in the data directory, or in a PostgreSQL database that several
// gateways share (Shared). Each kind has its own numbered schema migrations (migrate.go).
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/bbsim/bbsim/rim"
)

var (
	// ErrDuplicate: the source used this push id before.
	ErrDuplicate = errors.New("push store: duplicate push id")
	// ErrNotFound: no push with this id in the scope.
	ErrNotFound = errors.New("push store: push id not found")
	// ErrMoved: the recipient is held by another gateway now; its outcome is that
	// gateway's to record and report.
	ErrMoved = errors.New("push store: recipient handed over to another gateway")
	// ErrGatewayDown: the gateway to hand over to is not running.
	ErrGatewayDown = errors.New("push store: that gateway is not running")
	// ErrClosed: the store is closed.
	ErrClosed = errors.New("push store: store closed")
	// ErrNewer marks a store whose schema is newer than this bbsim knows.
	ErrNewer = errors.New("push store: schema newer than this bbsim knows")
)

// Push is a push as stored.
type Push struct {
	Key                         int64 // the store's key, set by InsertPush
	ID, Source                  string
	Header                      []byte // the push's headers as JSON
	Body                        []byte
	RequestURI                  string
	Reliability                 string
	DeliverBefore, DeliverAfter time.Time
	NotifyURL                   string
	NotifyPAP                   bool
	PAPVersion                  string
	AcceptedAt                  time.Time
}

// Recipient is one recipient of a push as stored.
type Recipient struct {
	Seq         int64 // the store's key, set by InsertPush
	PIN         string
	Port        int
	State       rim.State
	TransportAt time.Time
	// Holder: in a shared store, the other gateway that holds it from the start ("": this
	// one). Written only.
	Holder string
}

// OpenPush is a push with the recipients of it that are still open (queued or pending).
type OpenPush struct {
	Push       *Push
	Recipients []*Recipient
}

// Device is a device directory entry: its PIN, e-mail and, in a shared store, the gateway
// it attached at last.
type Device struct{ PIN, Email, Gateway string }

// Update is a recipient's new state, with the device's reason when it refused the push.
type Update struct {
	State       rim.State
	Code        int
	Reason      string
	TransportAt time.Time
	At          time.Time
}

// Status is a push and the states of its recipients.
type Status struct {
	PushID, Source string
	AcceptedAt     time.Time
	Recipients     []RecipientStatus
}

// RecipientStatus is one recipient's stored state.
type RecipientStatus struct {
	PIN         string
	Port        int
	State       rim.State
	Code        int
	Reason      string
	TransportAt time.Time // zero: none
	UpdatedAt   time.Time
}

// Scope is whose pushes a lookup by push id sees: one source's (a BIS application, or an
// initiator under push authentication), or with All, every source's, the latest first.
// Push ids are unique per source only, so another source's push with the same id is none
// of this one's business: it is not found, not queried, not cancelled, not replaced.
type Scope struct {
	Source string
	All    bool
}

// AnySource is the scope of a gateway without push authentication: any push with the id.
var AnySource = Scope{All: true}

// Store is what the gateway keeps. Writes are committed before they return (but
// SetStateLater's); concurrent ones are committed together (group commit), and one that
// fails does not undo the others.
type Store interface {
	// InsertPush stores a push and its recipients in state queued, and sends the notices
	// (to other gateways sharing the store) when it commits; it sets p.Key and the
	// recipients' Seq, or returns ErrDuplicate.
	InsertPush(ctx context.Context, p *Push, rs []*Recipient, notices []string) error
	// SetState records a recipient's state.
	SetState(ctx context.Context, seq int64, u Update) error
	// SetStateLater records a recipient's state in a coming commit without waiting for
	// it; then gets the outcome (ErrMoved: the recipient is another gateway's now). then
	// must not block.
	SetStateLater(seq int64, u Update, then func(error))
	// SaveDevice records a device's e-mail.
	SaveDevice(ctx context.Context, pin, email string) error
	// Devices reads the device directory, by PIN.
	Devices(ctx context.Context) (map[string]Device, error)
	// DeviceSecret reads the hash of a PIN's device secret ("": none).
	DeviceSecret(ctx context.Context, pin string) (string, error)
	// DeviceSecrets reads every device secret's hash, by PIN.
	DeviceSecrets(ctx context.Context) (map[string]string, error)
	// IssueSecret stores the hash of a PIN's device secret; without replace it stores
	// nothing and reports false when the PIN has one.
	IssueSecret(ctx context.Context, pin, hash string, replace bool, at time.Time) (bool, error)
	// ForgetSecret deletes a PIN's device secret ("": every PIN's).
	ForgetSecret(ctx context.Context, pin string) error
	// LoadOpen reads every push that has open recipients this gateway holds, in order.
	LoadOpen(ctx context.Context) ([]OpenPush, error)
	// PushStatus reads the latest push with this id in the scope, or ErrNotFound.
	PushStatus(ctx context.Context, sc Scope, pushID string) (Status, error)
	// LatestPush returns the key of the latest push with this id in the scope, or
	// ErrNotFound.
	LatestPush(ctx context.Context, sc Scope, pushID string) (int64, error)
	// PushExists reports whether a push with this id was ever stored in the scope.
	PushExists(ctx context.Context, sc Scope, pushID string) (bool, error)
	// Instance is this gateway's name among those sharing the store ("" when not shared).
	Instance() string
	// Stats returns how many group commits ran and how many operations they carried.
	Stats() (commits, ops int64)
	// Close commits what was submitted and closes the store.
	Close() error
}

// Shared is a store several gateways share (PostgreSQL): each holds (queues, delivers)
// some open recipients, hands them to the gateway their device attaches at and takes those
// of gateways that are not running. Notices go to the others on Channel.
type Shared interface {
	Store
	// URL is the database's, for a listener on Channel.
	URL() string
	// ShareDirectory adds devices (PIN and e-mail) to the shared directory and sends notice.
	ShareDirectory(ctx context.Context, devs []Device, notice string) error
	// AttachedHere records that a device attached at this gateway, takes its open
	// recipients from gateways that are not running, and sends notice; it returns the
	// other running gateway the device was attached at before ("" if none).
	AttachedHere(ctx context.Context, pin, email, notice string) (before string, err error)
	// HandOver gives the open recipients seqs that this gateway holds to gateway to, sends
	// notice, and returns those it gave; ErrGatewayDown when to is not running.
	HandOver(ctx context.Context, seqs []int64, to, notice string) (map[int64]bool, error)
	// ClaimStranded makes this gateway the holder of the open recipients of gateways that
	// are not running; it returns their PINs.
	ClaimStranded(ctx context.Context) ([]string, error)
	// ClaimPush makes this gateway the holder of the push's queued recipients that
	// gateways which are not running hold; it returns their PINs.
	ClaimPush(ctx context.Context, key int64) ([]string, error)
	// QueuedElsewhere returns the push's queued recipients other gateways hold, and who.
	QueuedElsewhere(ctx context.Context, key int64) (map[int64]string, error)
	// States returns the stored states of these recipients.
	States(ctx context.Context, seqs []int64) (map[int64]rim.State, error)
	// LoadHeld reads the open recipients this gateway holds for these PINs, with their
	// pushes.
	LoadHeld(ctx context.Context, pins []string) ([]OpenPush, error)
	// PendingHolders returns the gateways holding the latest pending recipients of the
	// pushes with this id for the PIN (at most two, the latest first), from source, or
	// from any source when source is nil.
	PendingHolders(ctx context.Context, pushID, pin string, source *string) ([]Pending, error)
	// Notify sends a notice to the gateways sharing the store.
	Notify(ctx context.Context, notice string) error
}

// Pending is a recipient waiting for its device's acknowledgement: who holds it, and its
// push's source.
type Pending struct{ Gateway, Source string }

// Channel is the PostgreSQL notification channel of the gateways sharing a store.
const Channel = "bbsim_push"

// LockClass and the instance name make the PostgreSQL advisory lock a gateway holds while
// its store is open: several gateways share a database, each under its own name, because
// each holds (delivers, and after a restart reloads) the open recipients that name it; the
// lock also tells the others whether it is running.
const LockClass = 0x62627369 // "bbsi"

// Options says which store to open.
type Options struct {
	// Dir is the directory of the SQLite store (push.db), used when URL is empty.
	Dir string
	// URL names a PostgreSQL database (postgres://…) to use instead.
	URL string
	// Instance is this gateway's name among those sharing a PostgreSQL store ("": "default").
	Instance string
	// Logger receives migrations (nil: none).
	Logger *slog.Logger
}

// IsPostgresURL reports whether a push-db setting names a PostgreSQL database.
func IsPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// Open opens the push store that opts name, migrating its schema to this version's. ctx
// bounds the opening (PostgreSQL's dial and schema). The store is a Shared one when it is
// PostgreSQL.
func Open(ctx context.Context, opts Options) (Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if IsPostgresURL(opts.URL) {
		instance := opts.Instance
		if instance == "" {
			instance = "default"
		}
		return openPostgres(ctx, opts.URL, instance, log)
	}
	if opts.URL != "" {
		return nil, fmt.Errorf("push store %q: want a postgres:// or postgresql:// URL, or nothing for SQLite in the data directory", opts.URL)
	}
	return openSQLite(ctx, opts.Dir, log)
}
