package ui

import (
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/x/exp/teatest"

	"github.com/bbsim/bbsim/handset"
)

func TestSignalBars(t *testing.T) {
	tests := []struct {
		r    handset.RadioStatus
		want string
	}{
		{handset.RadioStatus{Profile: "off", Bars: 4}, "▂▄▆█"},
		{handset.RadioStatus{Profile: "wifi", Bars: 4, Network: "WiFi"}, "▂▄▆█ WiFi"},
		{handset.RadioStatus{Profile: "edge", Bars: 3, Network: "EDGE"}, "▂▄▆· EDGE"},
		{handset.RadioStatus{Profile: "gprs", Bars: 2, Network: "GPRS"}, "▂▄·· GPRS"},
		{handset.RadioStatus{Profile: "flaky", Bars: 1, Network: "3G"}, "▂··· 3G"},
	}
	for _, tt := range tests {
		if got := signalBars(tt.r); got != tt.want {
			t.Errorf("signalBars(%s) = %q, want %q", tt.r.Profile, got, tt.want)
		}
	}
}

// TestRadioOnScreen checks that the status bar's bars and network follow the radio profile
// as it changes, that leaving coverage replaces them, and that the Options screen shows the
// profile, the drops, the schedule and the seed.
func TestRadioOnScreen(t *testing.T) {
	h := seeded(t)
	h.UpdateRadio(func(r *handset.RadioStatus) {
		*r = handset.RadioStatus{Profile: "gprs", Network: "GPRS", Bars: 2, Schedule: "in 60s, out 20s, repeat", Seed: 7, Drops: 3}
	})
	h.SetRadioControl(func(p string) (handset.RadioStatus, error) {
		return handset.RadioStatus{Profile: p, Network: "EDGE", Bars: 3}, nil
	})
	out := Render(h, opts(), ScreenOptions, 100, 30)
	for _, want := range []string{"▂▄·· GPRS", `Radio      gprs, 3 dropped, schedule "in 60s, out 20s, repeat" (seed 7)`} {
		if !strings.Contains(out, want) {
			t.Errorf("options screen lacks %q:\n%s", want, out)
		}
	}
	tm := teatest.NewTestModel(t, New(h, opts()), teatest.WithInitialTermSize(100, 30))
	waitScreen(t, tm, "▂▄·· GPRS")
	if _, err := h.SetRadioProfile("edge"); err != nil {
		t.Fatal(err)
	}
	waitScreen(t, tm, "▂▄▆· EDGE")
	h.SetCoverage(false)
	waitScreen(t, tm, "out of coverage")
	tm.Send(key("q"))
	tm.WaitFinished(t, teatest.WithFinalTimeout(5*time.Second))
}
