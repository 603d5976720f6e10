package handset

import "time"

// LinkState is the state of the device's link to the push gateway.
type LinkState string

// The push-gateway link states reported by the device object.
const (
	LinkOff       LinkState = "off"       // no gateway configured
	LinkAttaching LinkState = "attaching" // in coverage, not attached yet (retrying after an error)
	LinkAttached  LinkState = "attached"
	LinkDetached  LinkState = "detached" // out of coverage, or the gateway lost the attachment
	LinkRefused   LinkState = "refused"  // the gateway refused the attach itself: a configuration error
)

// LinkStatus is the device's link to the push gateway as the device reports it.
type LinkStatus struct {
	State   LinkState `json:"state"`
	Gateway string    `json:"gateway,omitempty"`
	// AttachedAt is when the current (or last) attachment was made.
	AttachedAt time.Time `json:"attached_at,omitzero"`
	// Attaches counts successful attaches, re-attaches after a lost gateway included.
	Attaches int `json:"attaches"`
	// LastError is the last failure of the link: a refused or failed attach, or a gateway
	// found to have lost the attachment.
	LastError *Disconnect `json:"last_error,omitempty"`
}

// LinkStatus returns the push-gateway link status.
func (h *Handset) LinkStatus() LinkStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.link
}

// UpdateLink changes the push-gateway link status under the handset's lock. It emits no
// event: the agent emits the event that explains the change.
func (h *Handset) UpdateLink(f func(*LinkStatus)) {
	h.mu.Lock()
	f(&h.link)
	h.mu.Unlock()
}
