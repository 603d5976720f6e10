package handset

import (
	"fmt"
	"strconv"
	"strings"
)

// DefaultSoftware is the device software a handset runs unless told otherwise: BlackBerry
// 7.1, the last BlackBerry OS, on which every browser push works.
const DefaultSoftware = "7.1.0"

// SoftwareInfo is a device software version bbsim knows, and what it changes.
type SoftwareInfo struct {
	Version string `json:"version"`
	Browser string `json:"browser"`
	Changes string `json:"changes"`
}

// KnownSoftware lists the versions whose behaviour bbsim emulates, oldest first. Any other
// version from 3.x to 7.x is accepted and behaves as the nearest one below it.
var KnownSoftware = []SoftwareInfo{
	{"5.0.0", "BlackBerry Browser", "renders HTML as the MDS Connection Service transcoded it"},
	{"6.0.0.141", "WebKit", "cannot render MDS-transcoded HTML: such a browser message or channel fails to open (RIM KB)"},
	{"6.0.0.203", "WebKit", "first 6.0 build that renders MDS-transcoded HTML (the KB's fix)"},
	{"7.0.0", "WebKit", "renders MDS-transcoded HTML"},
	{"7.1.0", "WebKit", "renders MDS-transcoded HTML (the default)"},
}

// Software is a BlackBerry Device Software version, such as 6.0.0.141.
type Software struct {
	v [4]int
	s string
}

// ParseSoftware parses a device software version: two to four dot-separated numbers, from
// 3.x to 7.x (BlackBerry OS; BlackBerry 10 had no browser push of this kind).
func ParseSoftware(s string) (Software, error) {
	s = strings.TrimSpace(s)
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 4 {
		return Software{}, fmt.Errorf("device software %q: want a version such as 7.1.0 or 6.0.0.141 (see --device-software list)", s)
	}
	var sw Software
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || p == "" || p[0] == '+' {
			return Software{}, fmt.Errorf("device software %q: %q is not a number (want a version such as 7.1.0)", s, p)
		}
		sw.v[i] = n
	}
	if sw.v[0] < 3 || sw.v[0] > 7 {
		return Software{}, fmt.Errorf("device software %q: BlackBerry Device Software ran from 3.x to 7.x", s)
	}
	sw.s = s
	return sw, nil
}

// String returns the version as it was written.
func (sw Software) String() string { return sw.s }

// Less reports whether sw is an earlier version than o (missing parts count as 0).
func (sw Software) Less(o Software) bool {
	for i := range sw.v {
		if sw.v[i] != o.v[i] {
			return sw.v[i] < o.v[i]
		}
	}
	return false
}

// Browser names the browser engine of that version: WebKit from 6.0.
func (sw Software) Browser() string {
	if sw.v[0] >= 6 {
		return "WebKit"
	}
	return "BlackBerry Browser"
}

var fixed6 = Software{v: [4]int{6, 0, 0, 203}, s: "6.0.0.203"}

// RendersTranscoded reports whether the browser renders HTML that the MDS Connection
// Service transcoded. BlackBerry 6.0's WebKit browser did not until 6.0.0.203.
func (sw Software) RendersTranscoded() bool {
	return !(sw.v[0] == 6 && sw.v[1] == 0 && sw.Less(fixed6))
}

// SoftwareStatus is the device software as GET /api/v1/device shows it.
type SoftwareStatus struct {
	Version string `json:"version"`
	Browser string `json:"browser"`
	// RendersTranscoded is false on the 6.0 builds that cannot open MDS-transcoded HTML.
	RendersTranscoded bool `json:"renders_transcoded"`
}

func (sw Software) status() SoftwareStatus {
	return SoftwareStatus{Version: sw.s, Browser: sw.Browser(), RendersTranscoded: sw.RendersTranscoded()}
}

// Software returns the device software the handset runs.
func (h *Handset) Software() Software {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.software
}

// SetSoftware changes the device software (as an upgrade or a downgrade would), emitting an
// event. Content already received stays as it is; the new version decides how it opens.
func (h *Handset) SetSoftware(version string) (Software, error) {
	sw, err := ParseSoftware(version)
	if err != nil {
		return Software{}, err
	}
	h.mu.Lock()
	old := h.software
	h.software = sw
	h.mu.Unlock()
	if old.s != sw.s {
		h.Emit(EventSoftware, fmt.Sprintf("device software %s (%s browser)", sw, sw.Browser()),
			map[string]string{"version": sw.s, "previous": old.s, "browser": sw.Browser()})
	}
	return sw, nil
}
