package ui

import (
	"testing"

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
