// Package radio emulates a handset's radio link on its TCP connections: the latency,
// bandwidth, retransmission stalls and dropped connections of a named profile (gprs, edge,
// 3g, wifi, flaky), and coverage that comes and goes on a schedule. A process without a
// profile installs nothing: its connections are the operating system's own.
//
// The model and the figures, with their sources, are in docs/radio.md.
package radio

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Profile is a set of radio conditions.
type Profile struct {
	// Name is the profile's name ("off": no conditions).
	Name string
	// Latency is the one-way delay added to each exchange in each direction, so that a
	// request and its answer take 2×Latency more.
	Latency time.Duration
	// Jitter spreads each exchange's latency uniformly by ±Jitter.
	Jitter time.Duration
	// Down and Up are the bandwidths toward and from the handset in bits per second;
	// 0 is unlimited.
	Down, Up int64
	// Loss is the probability that an exchange loses a segment, which TCP resends after a
	// retransmission timeout: the exchange stalls for RTO.
	Loss float64
	// RTO is the stall of a lost segment.
	RTO time.Duration
	// Drop is the probability that an exchange ends with the connection reset, as when the
	// radio bearer is lost: both ends see the connection fail.
	Drop float64
	// Bars is the signal strength the handset shows, 1 to 4.
	Bars int
	// Network is the network indicator the handset shows beside the bars (GPRS, EDGE, 3G,
	// WiFi).
	Network string
}

// Off is the name of no conditions.
const Off = "off"

// Off reports whether p sets no conditions at all.
func (p Profile) Off() bool { return p.Name == "" || p.Name == Off }

// minRTO is Linux's floor of the retransmission timeout (TCP_RTO_MIN, 200 ms).
const minRTO = 200 * time.Millisecond

// rto is the retransmission timeout of a link with this one-way latency: three round trips,
// at least Linux's 200 ms floor (RFC 6298 asks for SRTT + 4·RTTVAR with a 1 s floor; Linux
// lowers the floor to 200 ms).
func rto(latency time.Duration) time.Duration { return max(minRTO, 6*latency) }

// profiles are the named profiles; docs/radio.md gives the source of each figure.
var profiles = []Profile{
	{Name: "gprs", Latency: 300 * time.Millisecond, Jitter: 100 * time.Millisecond, Down: 80_000, Up: 40_000,
		Loss: 0.01, RTO: rto(300 * time.Millisecond), Bars: 2, Network: "GPRS"},
	{Name: "edge", Latency: 200 * time.Millisecond, Jitter: 60 * time.Millisecond, Down: 236_800, Up: 118_400,
		Loss: 0.01, RTO: rto(200 * time.Millisecond), Bars: 3, Network: "EDGE"},
	{Name: "3g", Latency: 100 * time.Millisecond, Jitter: 25 * time.Millisecond, Down: 1_920_000, Up: 128_000,
		Loss: 0.005, RTO: rto(100 * time.Millisecond), Bars: 4, Network: "3G"},
	{Name: "wifi", Latency: 1 * time.Millisecond, Down: 20_000_000, Up: 20_000_000, RTO: minRTO, Bars: 4, Network: "WiFi"},
	{Name: "flaky", Latency: 100 * time.Millisecond, Jitter: 50 * time.Millisecond, Down: 1_920_000, Up: 128_000,
		Loss: 0.05, RTO: rto(100 * time.Millisecond), Drop: 0.03, Bars: 1, Network: "3G"},
}

// Names lists the named profiles.
func Names() []string {
	out := make([]string, 0, len(profiles)+1)
	for _, p := range profiles {
		out = append(out, p.Name)
	}
	return append(out, Off)
}

// Lookup returns the named profile.
func Lookup(name string) (Profile, bool) {
	name = strings.ToLower(strings.TrimSpace(name))
	if name == Off || name == "" {
		return Profile{Name: Off}, true
	}
	i := slices.IndexFunc(profiles, func(p Profile) bool { return p.Name == name })
	if i < 0 {
		return Profile{}, false
	}
	return profiles[i], true
}

// ErrUnknown is a profile name bbsim does not know.
var ErrUnknown = errors.New("unknown radio profile")

// Parse parses NAME[,KEY=VALUE...]: a named profile, with figures changed by latency,
// jitter, rto (durations), down, up (kbit/s), loss and drop (a fraction, or a percentage
// with %). "off" sets no conditions and takes no changes.
func Parse(spec string) (Profile, error) {
	parts := strings.Split(spec, ",")
	p, ok := Lookup(parts[0])
	if !ok {
		return Profile{}, fmt.Errorf("%w %q: want one of %s, optionally followed by ,latency=DURATION,jitter=,rto=,down=KBITS,up=,loss=FRACTION|N%%,drop=",
			ErrUnknown, strings.TrimSpace(parts[0]), strings.Join(Names(), ", "))
	}
	if p.Off() && len(parts) > 1 {
		return Profile{}, fmt.Errorf("radio profile %q: off takes no figures", spec)
	}
	rtoSet, jitterSet, named := false, false, p
	for _, kv := range parts[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return Profile{}, fmt.Errorf("radio profile %q: %q is not KEY=VALUE", spec, kv)
		}
		var err error
		switch strings.ToLower(k) {
		case "latency":
			p.Latency, err = parseDuration(v)
		case "jitter":
			p.Jitter, err = parseDuration(v)
			jitterSet = true
		case "rto":
			p.RTO, err = parseDuration(v)
			rtoSet = true
		case "down":
			p.Down, err = parseKbits(v)
		case "up":
			p.Up, err = parseKbits(v)
		case "loss":
			p.Loss, err = parseFraction(v)
		case "drop":
			p.Drop, err = parseFraction(v)
		default:
			return Profile{}, fmt.Errorf("radio profile %q: unknown figure %q (latency, jitter, rto, down, up, loss, drop)", spec, k)
		}
		if err != nil {
			return Profile{}, fmt.Errorf("radio profile %q: %s: %w", spec, k, err)
		}
	}
	if p.Latency != named.Latency {
		// A changed latency moves the timeout and the jitter with it, unless they were
		// given too: the jitter keeps its share of the latency.
		if !rtoSet {
			p.RTO = rto(p.Latency)
		}
		if !jitterSet && named.Latency > 0 {
			p.Jitter = time.Duration(float64(named.Jitter) * float64(p.Latency) / float64(named.Latency))
		}
	}
	if p.Jitter > p.Latency {
		return Profile{}, fmt.Errorf("radio profile %q: jitter %v exceeds latency %v", spec, p.Jitter, p.Latency)
	}
	if len(parts) > 1 {
		p.Name = strings.Join(parts, ",")
	}
	return p, nil
}

func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is not a duration of 0 or more", v)
	}
	return d, nil
}

func parseKbits(v string) (int64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || f < 0 || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a bandwidth in kbit/s (0: unlimited)", v)
	}
	return int64(f * 1000), nil
}

func parseFraction(v string) (float64, error) {
	v = strings.TrimSpace(v)
	scale := 1.0
	if s, ok := strings.CutSuffix(v, "%"); ok {
		v, scale = s, 100
	}
	f, err := strconv.ParseFloat(v, 64)
	f /= scale
	if err != nil || f < 0 || f > 1 || math.IsNaN(f) {
		return 0, fmt.Errorf("%q is not a probability (0 to 1, or 0%% to 100%%)", v)
	}
	return f, nil
}

// String describes the profile's figures in one line.
func (p Profile) String() string {
	if p.Off() {
		return "off (no radio conditions)"
	}
	return fmt.Sprintf("%s: latency %v±%v each way, down %s, up %s, loss %.1f%% (stall %v), drop %.1f%% per exchange",
		p.Name, p.Latency, p.Jitter, kbits(p.Down), kbits(p.Up), 100*p.Loss, p.RTO, 100*p.Drop)
}

func kbits(b int64) string {
	if b == 0 {
		return "unlimited"
	}
	return strconv.FormatFloat(float64(b)/1000, 'f', -1, 64) + " kbit/s"
}
