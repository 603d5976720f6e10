package radio

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Step is one step of a coverage schedule: in or out of coverage for a time drawn
// uniformly from [Min, Max].
type Step struct {
	In       bool
	Min, Max time.Duration
}

// Schedule toggles coverage by itself: its steps in order, then again from the first
// when Repeat, else back in coverage for good.
type Schedule struct {
	Steps  []Step
	Repeat bool
	text   string
}

// String returns the schedule as it was written.
func (s Schedule) String() string { return s.text }

// Empty reports whether the schedule has no steps.
func (s Schedule) Empty() bool { return len(s.Steps) == 0 }

// ParseSchedule parses "in 60s, out 20s, repeat": comma-separated steps "in DURATION" or
// "out DURATION", where a duration may be a range "20s-40s" drawn at each pass, and an
// optional last word "repeat". An empty text is an empty schedule.
func ParseSchedule(text string) (Schedule, error) {
	s := Schedule{text: strings.TrimSpace(text)}
	if s.text == "" {
		return s, nil
	}
	items := strings.Split(s.text, ",")
	for i, item := range items {
		item = strings.TrimSpace(item)
		if strings.EqualFold(item, "repeat") {
			if i != len(items)-1 {
				return Schedule{}, fmt.Errorf("coverage schedule %q: repeat must come last", text)
			}
			s.Repeat = true
			continue
		}
		word, dur, _ := strings.Cut(item, " ")
		var st Step
		switch strings.ToLower(word) {
		case "in":
			st.In = true
		case "out":
		default:
			return Schedule{}, fmt.Errorf("coverage schedule %q: step %q: want \"in DURATION\", \"out DURATION\" or a last \"repeat\"", text, item)
		}
		lo, hi, isRange := strings.Cut(strings.TrimSpace(dur), "-")
		var err error
		if st.Min, err = time.ParseDuration(strings.TrimSpace(lo)); err != nil || st.Min <= 0 {
			return Schedule{}, fmt.Errorf("coverage schedule %q: step %q: %q is not a positive duration (e.g. 20s, or a range 20s-40s)", text, item, lo)
		}
		st.Max = st.Min
		if isRange {
			if st.Max, err = time.ParseDuration(strings.TrimSpace(hi)); err != nil || st.Max < st.Min {
				return Schedule{}, fmt.Errorf("coverage schedule %q: step %q: %q is not a duration of at least %v", text, item, hi, st.Min)
			}
		}
		s.Steps = append(s.Steps, st)
	}
	if len(s.Steps) == 0 {
		return Schedule{}, fmt.Errorf("coverage schedule %q: no in or out step", text)
	}
	return s, nil
}

// Run follows the schedule until it ends or ctx does: set is called at each step with
// the coverage and how long it lasts (0 for the last, lasting, coverage of a schedule
// without repeat). Ranges are drawn from seed, so a run with the same seed toggles at the
// same times.
func (s Schedule) Run(ctx context.Context, seed uint64, set func(in bool, d time.Duration)) {
	if s.Empty() {
		return
	}
	rng := rand.New(rand.NewPCG(seed, 0x636f766572616765)) // "coverage": apart from the links' streams
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		for _, st := range s.Steps {
			d := st.Min
			if st.Max > st.Min {
				d += time.Duration(rng.Int64N(int64(st.Max - st.Min + 1)))
			}
			set(st.In, d)
			t.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		if !s.Repeat {
			set(true, 0)
			return
		}
	}
}

// Conditions are a process's radio settings: --radio, --coverage-schedule, --radio-seed.
type Conditions struct {
	Profile  Profile
	Schedule Schedule
	Seed     uint64
}

// ParseConditions parses the three settings; a seed of 0 picks a new one.
func ParseConditions(profile, schedule string, seed uint64) (Conditions, error) {
	p, perr := Parse(profile)
	if perr != nil {
		perr = fmt.Errorf("--radio: %w", perr)
	}
	s, serr := ParseSchedule(schedule)
	if serr != nil {
		serr = fmt.Errorf("--coverage-schedule: %w", serr)
	}
	if err := errors.Join(perr, serr); err != nil {
		return Conditions{}, err
	}
	if seed == 0 {
		seed = rand.Uint64()
	}
	return Conditions{Profile: p, Schedule: s, Seed: seed}, nil
}

// Link returns a link under the profile, or nil when it is off: nothing is to be wrapped.
func (c Conditions) Link() *Link {
	if c.Profile.Off() {
		return nil
	}
	return NewLink(c.Profile, c.Seed)
}
