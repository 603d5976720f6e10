package radio

import (
	"context"
	"fmt"
	"time"

	"github.com/bbsim/bbsim/handset"
)

// Status is the handset's view of profile p.
func Status(p Profile) handset.RadioStatus {
	if p.Off() {
		return handset.RadioStatus{Profile: Off, Bars: 4}
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return handset.RadioStatus{Profile: p.Name, Network: p.Network, Bars: p.Bars, LatencyMS: ms(p.Latency),
		JitterMS: ms(p.Jitter), DownKbps: float64(p.Down) / 1000, UpKbps: float64(p.Up) / 1000,
		Loss: p.Loss, StallMS: ms(p.RTO), Drop: p.Drop}
}

// Attach shows l's conditions on h, lets h's control API change them, and reports the
// connections l drops as h's events.
func Attach(h *handset.Handset, l *Link) {
	Show(h, l)
	h.SetRadioControl(func(spec string) (handset.RadioStatus, error) {
		p, err := Parse(spec)
		if err != nil {
			return handset.RadioStatus{}, err
		}
		l.Set(p)
		return Status(p), nil
	})
	l.OnDrop(func(stream string) {
		var drops int
		h.UpdateRadio(func(r *handset.RadioStatus) { r.Drops++; drops = r.Drops })
		h.Emit(handset.EventRadio, fmt.Sprintf("radio: the %s connection dropped (%s)", stream, l.Profile().Name),
			map[string]string{"drop": stream, "profile": l.Profile().Name, "drops": fmt.Sprint(drops)})
	})
}

// Show shows l's conditions on h, with an event.
func Show(h *handset.Handset, l *Link) {
	st := Status(l.Profile())
	h.UpdateRadio(func(r *handset.RadioStatus) {
		*r = r.WithProfile(st)
		r.Seed = l.Seed()
	})
	h.Emit(handset.EventRadio, fmt.Sprintf("radio: %s (--radio-seed %d)", l.Profile(), l.Seed()),
		map[string]string{"profile": st.Profile, "seed": fmt.Sprint(l.Seed())})
}

// RunSchedule moves the handsets in and out of coverage together on s until s ends or ctx
// does, with an event at each step.
func RunSchedule(ctx context.Context, s Schedule, seed uint64, hs ...*handset.Handset) {
	if s.Empty() {
		return
	}
	for _, h := range hs {
		h.UpdateRadio(func(r *handset.RadioStatus) { r.Schedule, r.Seed = s.String(), seed })
		h.Emit(handset.EventRadio, fmt.Sprintf("coverage schedule %q (--radio-seed %d)", s, seed),
			map[string]string{"schedule": s.String(), "seed": fmt.Sprint(seed)})
	}
	s.Run(ctx, seed, func(in bool, d time.Duration) {
		state, text := "out", fmt.Sprintf("coverage schedule: out of coverage for %v", d)
		if in {
			state, text = "in", fmt.Sprintf("coverage schedule: in coverage for %v", d)
			if d == 0 {
				text = "coverage schedule: done, in coverage from now on"
			}
		}
		for _, h := range hs {
			h.Emit(handset.EventRadio, text, map[string]string{"coverage": state, "for": d.String(), "by": "schedule"})
			h.SetCoverage(in)
		}
	})
}
