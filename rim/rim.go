// Package rim is the BlackBerry push protocol's vocabulary, shared by the push server, its
// BIS service, the push initiator, the handset's push receiver and the configuration:
// header names, push types, result codes, states, PINs and addresses, and media types read
// as the field writes them. It imports no other bbsim package; rim/pap holds PAP itself.
package rim

import (
	"fmt"
	"strconv"
	"strings"
)

// Header names of RIM push, in the canonical form net/http keys headers by, so that they
// work both with http.Header.Get and as map keys. Senders write them in any case.
const (
	HeaderPushID             = "X-Rim-Push-Id"
	HeaderPushType           = "X-Rim-Push-Type"
	HeaderTitle              = "X-Rim-Push-Title"
	HeaderChannelID          = "X-Rim-Push-Channel-Id"
	HeaderUnreadIconURL      = "X-Rim-Push-Unread-Icon-Url"
	HeaderReadIconURL        = "X-Rim-Push-Read-Icon-Url"
	HeaderDeleteURL          = "X-Rim-Push-Delete-Url"
	HeaderPriority           = "X-Rim-Push-Priority"
	HeaderNotifyURL          = "X-Rim-Push-Notifyurl"
	HeaderReliabilityMode    = "X-Rim-Push-Reliability-Mode"
	HeaderReliability        = "X-Rim-Push-Reliability"
	HeaderDeliverAfter       = "X-Rim-Push-Deliver-After"
	HeaderDeliverBefore      = "X-Rim-Push-Deliver-Before"
	HeaderDestPort           = "X-Rim-Push-Dest-Port"
	HeaderRequestURI         = "X-Rim-Push-Request-Uri"
	HeaderStatus             = "X-Rim-Push-Status"
	HeaderDestination        = "X-Rim-Push-Destination"
	HeaderTranscode          = "X-Rim-Transcode-Content"
	HeaderContentLocation    = "Content-Location"
	HeaderPushMessageID      = "Push-Message-Id"
	HeaderContentTransferEnc = "Content-Transfer-Encoding"
)

// bbsim's own device-link headers, which the gateway writes on each packet and the device
// reads (docs/device-link.md); an initiator may not send them.
const (
	// HeaderPacket is "index/count" of a push sent in several packets.
	HeaderPacket = "X-Bbsim-Packet"
	// HeaderPushLength is the whole push's length in bytes.
	HeaderPushLength = "X-Bbsim-Push-Length"
	// HeaderPushSource names a push's source (its BIS application or its initiator), ""
	// for a push without one: push ids are unique per source only, so the device's
	// acknowledgement names it back.
	HeaderPushSource = "X-Bbsim-Push-Source"
)

// BrowserPort is the port of the handset browser's push listener.
const BrowserPort = 7874

// Browser push types (the values of X-RIM-Push-Type), as RIM's samples spell them.
const (
	TypeChannel       = "Browser-Channel"
	TypeMessage       = "Browser-Message"
	TypeContent       = "Browser-Content"
	TypeChannelDelete = "Browser-Channel-Delete"
)

// PushType returns the canonical spelling of a push type written in any case, and whether
// it is one.
func PushType(s string) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "browser-channel":
		return TypeChannel, true
	case "browser-message":
		return TypeMessage, true
	case "browser-content":
		return TypeContent, true
	case "browser-channel-delete":
		return TypeChannelDelete, true
	}
	return "", false
}

// Priority reports whether s is an X-RIM-Push-Priority value (none, low, medium, high).
func Priority(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "none", "low", "medium", "high":
		return true
	}
	return false
}

// Reliability modes of a push, as the server keeps them.
const (
	ReliabilityTransport   = "transport"
	ReliabilityApplication = "application"
	// ReliabilityConfirmed is BIS's confirmed delivery: the application acknowledges.
	ReliabilityConfirmed = "confirmed"
	// ReliabilityApplicationPreferred is application where the device acknowledges at the
	// application level (device software 4.0 or later), transport elsewhere.
	ReliabilityApplicationPreferred = "application-preferred"
)

// State is a recipient's state, as the push server keeps it and its API shows it.
type State string

// Recipient states. Queued and pending are open; the others are final.
const (
	// StateQueued waits for its device.
	StateQueued State = "queued"
	// StatePending was delivered to the device and waits for the application's
	// acknowledgement (application reliability).
	StatePending State = "pending"
	// StateDelivered reached its device (and, with application reliability, its application).
	StateDelivered State = "delivered"
	// StateFailed was refused by the device, or the application acknowledged it with an error.
	StateFailed State = "failed"
	// StateExpired waited longer than the flow-control timeout or its deliver-before.
	StateExpired State = "expired"
	// StateTimeout was delivered but never acknowledged by the application in time.
	StateTimeout State = "timeout"
	// StateCancelled was cancelled by its initiator while queued.
	StateCancelled State = "cancelled"
)

// FinalStates are the final states, in the order the push server's metrics list them.
var FinalStates = []State{StateDelivered, StateExpired, StateFailed, StateCancelled, StateTimeout}

// Final reports whether a recipient in state st is done.
func Final(st State) bool {
	switch st {
	case StateQueued, StatePending, "":
		return false
	}
	return true
}

// PAP message-states: the message-state attribute of PAP answers and result notifications,
// which MessageState derives from a recipient's State.
const (
	MessageStatePending       = "pending"
	MessageStateDelivered     = "delivered"
	MessageStateExpired       = "expired"
	MessageStateTimeout       = "timeout"
	MessageStateCancelled     = "cancelled"
	MessageStateUndeliverable = "undeliverable"
	MessageStateUnknown       = "unknown"
)

// MessageState maps a recipient state and its result code to the PAP message-state and the
// PAP code that report it. A failure keeps its own code (a device refusal, 4502...).
func MessageState(state State, code int) (string, int) {
	switch state {
	case StateQueued, StatePending:
		return MessageStatePending, CodeAccepted
	case StateDelivered:
		return MessageStateDelivered, CodeOK
	case StateExpired:
		return MessageStateExpired, CodeExpired
	case StateTimeout:
		return MessageStateTimeout, CodeExpired
	case StateCancelled:
		return MessageStateCancelled, CodeFailed
	case StateFailed:
		if code == 0 || code == 200 {
			code = CodeFailed
		}
		return MessageStateUndeliverable, code
	}
	return MessageStateUnknown, CodeFailed
}

// NotifyStatus is the X-RIM-Push-Status of a RIM result notification: 200 delivered,
// otherwise the failure's code.
func NotifyStatus(state State, code int) int {
	switch state {
	case StateDelivered:
		return 200
	case StateCancelled:
		return CodeFailed
	}
	if code == 0 {
		return CodeFailed
	}
	return code
}

// NormalizePIN returns a PIN in upper case without surrounding white space, and whether it
// is one: 8 hex digits.
func NormalizePIN(s string) (string, bool) {
	p := strings.ToUpper(strings.TrimSpace(s))
	if len(p) != 8 {
		return p, false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return p, false
		}
	}
	return p, true
}

// FormatInt is strconv.Itoa, kept here so codes print one way.
func formatInt(n int) string { return strconv.Itoa(n) }

// ParseReliability reads X-RIM-Push-Reliability-Mode (or X-Rim-Push-Reliability, which
// RIM's own samples send) in any case: transport (or none), application or
// application-preferred (which the gateway decides per device, by its software).
func ParseReliability(v string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "transport":
		return ReliabilityTransport, nil
	case "application":
		return ReliabilityApplication, nil
	case "application-preferred":
		return ReliabilityApplicationPreferred, nil
	}
	return "", fmt.Errorf("bad reliability %q", v)
}

// ReliabilityHeader is the reliability a header set asks for, under either name.
func ReliabilityHeader(get func(string) string) string {
	if v := get(HeaderReliabilityMode); v != "" {
		return v
	}
	return get(HeaderReliability)
}
