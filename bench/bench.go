// Package bench measures bbsim end to end on loopback, with real clients and the real
// components: push throughput and latency through the push server to handset receivers,
// a receiver's own rate, and mail from SMTP to the handset's message list (against the
// bundled mail server and, when installed, Dovecot).
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/lipgloss/table"

	"github.com/bbsim/bbsim/internal/radio"
	"github.com/bbsim/bbsim/internal/termtext"
)

// Figure is one measurement.
type Figure struct {
	Name   string  `json:"name"`
	N      int     `json:"n"`
	Median float64 `json:"median_ms,omitempty"` // milliseconds
	P99    float64 `json:"p99_ms,omitempty"`    // milliseconds
	Rate   float64 `json:"rate,omitempty"`      // per second
	Target string  `json:"target,omitempty"`
	Met    *bool   `json:"met,omitempty"`
	Note   string  `json:"note,omitempty"`
	Err    string  `json:"error,omitempty"`
}

// Report is a run of every measurement.
type Report struct {
	Cores   int       `json:"cores"`
	GOOS    string    `json:"goos"`
	GOARCH  string    `json:"goarch"`
	Go      string    `json:"go"`
	At      time.Time `json:"at"`
	Radio   string    `json:"radio,omitempty"` // the radio profile the handsets ran under
	Figures []Figure  `json:"figures"`
}

// Options configure a run.
type Options struct {
	// Dir is a scratch directory. Required.
	Dir string
	// Quick shrinks every measurement (for tests and a first look).
	Quick bool
	// Only runs the measurements whose names contain one of these words.
	Only []string
	// Progress receives a line as each measurement starts. Default: none.
	Progress io.Writer
	// Radio puts the handsets' device links and mail connection under a radio profile.
	// Default: none.
	Radio  radio.Conditions
	Logger *slog.Logger
}

type measure struct {
	name string
	run  func(ctx context.Context, o Options) []Figure
}

func measures() []measure {
	return []measure{
		{"push", pushEndToEnd},
		{"receiver", receiverRate},
		{"mail", mailToHandset},
	}
}

// Names lists the measurements in the order Run takes them.
func Names() []string {
	var out []string
	for _, m := range measures() {
		out = append(out, m.name)
	}
	return out
}

// CheckOnly reports the words of only that select no measurement.
func CheckOnly(only []string) error {
	for _, w := range only {
		hit := false
		for _, n := range Names() {
			hit = hit || selected(n, []string{w})
		}
		if !hit {
			return fmt.Errorf("--only %q selects no measurement; there are %s", w, strings.Join(Names(), ", "))
		}
	}
	return nil
}

// Run runs the measurements one after the other.
func Run(ctx context.Context, o Options) Report {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	r := Report{Cores: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, Go: runtime.Version(), At: time.Now().UTC()}
	if !o.Radio.Profile.Off() {
		r.Radio = fmt.Sprintf("%s (--radio-seed %d)", o.Radio.Profile, o.Radio.Seed)
	}
	for _, m := range measures() {
		if !selected(m.name, o.Only) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(o.Progress, "bench: %s…\n", m.name)
		dir, err := os.MkdirTemp(o.Dir, m.name+"-")
		if err != nil {
			r.Figures = append(r.Figures, Figure{Name: m.name, Err: err.Error()})
			continue
		}
		mo := o
		mo.Dir = dir
		r.Figures = append(r.Figures, m.run(ctx, mo)...)
		os.RemoveAll(dir)
	}
	return r
}

func selected(name string, only []string) bool {
	if len(only) == 0 {
		return true
	}
	for _, w := range only {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// Table renders the report for the terminal.
func (r Report) Table() string {
	t := table.New().Border(lipgloss.NormalBorder()).
		Headers("measurement", "n", "median", "p99", "rate", "target", "met", "note").
		StyleFunc(func(row, col int) lipgloss.Style { return lipgloss.NewStyle().Padding(0, 1) })
	for _, f := range r.Figures {
		met := ""
		if f.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*f.Met]
		}
		note := f.Note
		if f.Err != "" {
			note = "error: " + f.Err
		}
		t.Row(f.Name, fmt.Sprint(f.N), ms(f.Median), ms(f.P99), rate(f.Rate), f.Target, met, termtext.Line(note))
	}
	under := ""
	if r.Radio != "" {
		under = "handsets under radio " + r.Radio + "\n"
	}
	return fmt.Sprintf("bbsim bench: %d cores, %s/%s, %s, %s\n%s%s\n", r.Cores, r.GOOS, r.GOARCH, r.Go,
		r.At.Format(time.RFC3339), under, t.Render())
}

func ms(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 1:
		return fmt.Sprintf("%.3f ms", v)
	default:
		return fmt.Sprintf("%.1f ms", v)
	}
}

func rate(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f/s", v)
}

// quantile returns the q quantile of ds, in milliseconds.
func quantile(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	i = min(max(i, 0), len(s)-1)
	return float64(s[i]) / float64(time.Millisecond)
}

func met(ok bool) *bool { return &ok }

func errFigure(name string, err error) []Figure {
	return []Figure{{Name: name, Err: err.Error()}}
}
