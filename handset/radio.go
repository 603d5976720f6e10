package handset

import (
	"errors"
	"fmt"
)

// EventRadio is a change of the radio conditions: a profile set, a connection the link
// dropped, a step of the coverage schedule.
const EventRadio = "radio"

// RadioStatus is the device's radio conditions as the UI and the control API show them.
type RadioStatus struct {
	// Profile is the profile's name, "off" when there are no conditions.
	Profile string `json:"profile"`
	// Network is the indicator shown beside the bars (GPRS, EDGE, 3G, WiFi); "" when off.
	Network string `json:"network,omitempty"`
	// Bars is the signal strength, 1 to 4 (4 when off); out of coverage shows none.
	Bars      int     `json:"bars"`
	LatencyMS float64 `json:"latency_ms"`
	JitterMS  float64 `json:"jitter_ms"`
	DownKbps  float64 `json:"down_kbps"` // 0: unlimited
	UpKbps    float64 `json:"up_kbps"`   // 0: unlimited
	Loss      float64 `json:"loss"`      // per exchange: a stall of one retransmission timeout
	StallMS   float64 `json:"stall_ms"`
	Drop      float64 `json:"drop"` // per exchange: the connection is reset
	// Schedule is the coverage schedule being followed, "" when none.
	Schedule string `json:"schedule,omitempty"`
	// Seed makes the run's drops and drawn schedule times repeatable (--radio-seed).
	Seed uint64 `json:"seed"`
	// Drops counts the connections the link dropped.
	Drops int `json:"drops"`
}

// WithProfile is r with st's profile and figures: the schedule, seed and drops, which
// belong to the run rather than the profile, stay r's.
func (r RadioStatus) WithProfile(st RadioStatus) RadioStatus {
	st.Schedule, st.Seed, st.Drops = r.Schedule, r.Seed, r.Drops
	return st
}

// ErrRadioOff is a profile change asked of a handset whose process runs without radio
// conditions, whose connections are not shaped at all.
var ErrRadioOff = errors.New("radio conditions are off in this process: start it with --radio PROFILE to change them at run time")

// RadioControl applies a profile (NAME[,KEY=VALUE...]) to the device's connections and
// returns the status it leads to.
type RadioControl func(profile string) (RadioStatus, error)

// Radio returns the radio conditions.
func (h *Handset) Radio() RadioStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.radioLocked()
}

func (h *Handset) radioLocked() RadioStatus {
	st := h.radio
	if st.Profile == "" {
		st.Profile, st.Bars = "off", 4
	}
	return st
}

// UpdateRadio changes the radio status under the handset's lock, without an event.
func (h *Handset) UpdateRadio(f func(*RadioStatus)) {
	h.mu.Lock()
	f(&h.radio)
	h.mu.Unlock()
}

// SetRadioControl installs what applies profile changes (the process's radio link).
func (h *Handset) SetRadioControl(c RadioControl) {
	h.mu.Lock()
	h.radioControl = c
	h.mu.Unlock()
}

// SetRadioProfile changes the radio conditions, emitting an event.
func (h *Handset) SetRadioProfile(profile string) (RadioStatus, error) {
	h.mu.Lock()
	c := h.radioControl
	h.mu.Unlock()
	if c == nil {
		return h.Radio(), ErrRadioOff
	}
	st, err := c(profile)
	if err != nil {
		return h.Radio(), err
	}
	h.mu.Lock()
	old := h.radio.Profile
	h.radio = h.radio.WithProfile(st)
	h.mu.Unlock()
	if old != st.Profile {
		h.Emit(EventRadio, fmt.Sprintf("radio: %s (was %s)", st.Profile, old),
			map[string]string{"profile": st.Profile, "previous": old})
	}
	return h.Radio(), nil
}
