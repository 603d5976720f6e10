package handset

import (
	"fmt"

	"github.com/bbsim/bbsim/rim"
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
	{"3.8.0", "BlackBerry Browser", "no application-level acknowledgements (application-preferred falls back to transport; application is not possible); ignores X-Rim-Push-Delete-Url"},
	{"4.0.0", "BlackBerry Browser", "acknowledges at the application level; ignores X-Rim-Push-Delete-Url"},
	{"4.2.0", "BlackBerry Browser", "fetches X-Rim-Push-Delete-Url when the user deletes a channel"},
	{"5.0.0", "BlackBerry Browser", "renders HTML as the MDS Connection Service transcoded it"},
	{"6.0.0.141", "WebKit", "cannot render MDS-transcoded HTML: such a browser message or channel fails to open (RIM KB)"},
	{"6.0.0.203", "WebKit", "first 6.0 build that renders MDS-transcoded HTML (the KB's fix)"},
	{"7.0.0", "WebKit", "renders MDS-transcoded HTML"},
	{"7.1.0", "WebKit", "renders MDS-transcoded HTML (the default)"},
}

// Software is a BlackBerry Device Software version, such as 6.0.0.141 (rim.Software, which
// the push gateway also reads).
type Software = rim.Software

// ParseSoftware parses a device software version (rim.ParseSoftware).
func ParseSoftware(s string) (Software, error) { return rim.ParseSoftware(s) }

// SoftwareStatus is the device software as GET /api/v1/device shows it.
type SoftwareStatus struct {
	Version string `json:"version"`
	Browser string `json:"browser"`
	// RendersTranscoded is false on the 6.0 builds that cannot open MDS-transcoded HTML.
	RendersTranscoded bool `json:"renders_transcoded"`
}

func softwareStatus(sw Software) SoftwareStatus {
	return SoftwareStatus{Version: sw.String(), Browser: sw.Browser(), RendersTranscoded: sw.RendersTranscoded()}
}

// Software returns the device software the handset runs.
func (h *Handset) Software() Software {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.software
}

// SoftwareWatch returns the device software and a channel that is closed when it changes
// (the device link tells the gateway again).
func (h *Handset) SoftwareWatch() (Software, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.software, h.swChange
}

// SetSoftware changes the device software (as an upgrade or a downgrade would), emitting an
// event. Content already received stays as it is; the new version decides how it opens. The
// change is journalled: a restart with the same Options.Software keeps it, a restart with
// another one starts from that.
func (h *Handset) SetSoftware(version string) (Software, error) {
	sw, err := ParseSoftware(version)
	if err != nil {
		return Software{}, err
	}
	h.mu.Lock()
	old := h.software
	if old == sw {
		h.mu.Unlock()
		return sw, nil
	}
	if err := h.writeLocked(recSoftware, softwareRec{Version: sw.String(), Option: h.softwareOption}); err != nil {
		h.mu.Unlock()
		return Software{}, err
	}
	h.software = sw
	close(h.swChange)
	h.swChange = make(chan struct{})
	h.mu.Unlock()
	h.Emit(EventSoftware, fmt.Sprintf("device software %s (%s browser)", sw, sw.Browser()),
		map[string]string{"version": sw.String(), "previous": old.String(), "browser": sw.Browser()})
	return sw, nil
}
