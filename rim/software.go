package rim

import (
	"fmt"
	"strconv"
	"strings"
)

// Software is a BlackBerry Device Software version, such as 6.0.0.141. The push gateway
// learns it when the device attaches, as MDS learnt it from the device; the handset runs
// it. What each version changes is in the methods below, each with its source.
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

// IsZero reports whether sw is no version (not known).
func (sw Software) IsZero() bool { return sw.s == "" }

// Less reports whether sw is an earlier version than o (missing parts count as 0).
func (sw Software) Less(o Software) bool {
	for i := range sw.v {
		if sw.v[i] != o.v[i] {
			return sw.v[i] < o.v[i]
		}
	}
	return false
}

func version(a, b, c, d int) Software { return Software{v: [4]int{a, b, c, d}} }

// Browser names the browser engine of that version: WebKit from 6.0 (BlackBerry 6 replaced
// the BlackBerry Browser with a WebKit one).
func (sw Software) Browser() string {
	if sw.v[0] >= 6 {
		return "WebKit"
	}
	return "BlackBerry Browser"
}

// RendersTranscoded reports whether the browser renders HTML that the MDS Connection
// Service transcoded. BlackBerry 6.0's WebKit browser did not until 6.0.0.203 (RIM KB,
// "Browser push content is not accessible on BlackBerry devices running BlackBerry 6.0").
func (sw Software) RendersTranscoded() bool {
	return !(sw.v[0] == 6 && sw.v[1] == 0 && sw.Less(version(6, 0, 0, 203)))
}

// AppAcks reports whether the device acknowledges pushes at the application level: device
// software 4.0 or later (RIM's push samples: application-level reliability needs BlackBerry
// Device Software 4.0 or later). Before it, application-preferred falls back to transport
// and application is not possible.
func (sw Software) AppAcks() bool { return !sw.Less(version(4, 0, 0, 0)) }

// FetchesDeleteURL reports whether the browser honours X-Rim-Push-Delete-Url, fetching it
// in the background when the user deletes the channel: device software 4.2 or later (RIM,
// "Configure notification for when a Browser Channel push is deleted"). Older browsers
// ignore the header.
func (sw Software) FetchesDeleteURL() bool { return !sw.Less(version(4, 2, 0, 0)) }
