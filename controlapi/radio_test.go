package controlapi

import (
	"strings"
	"testing"

	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/internal/radio"
)

// TestRadio reads and changes the radio profile: refused (409) in a process without radio
// conditions, then changed on a link, with an event; a bad profile names the known ones.
func TestRadio(t *testing.T) {
	t.Parallel()
	h, srv := newAPI(t)
	var st handset.RadioStatus
	do(t, "GET", srv.URL+"/api/v1/radio", "", 200, &st)
	if st.Profile != "off" || st.Bars != 4 {
		t.Errorf("GET radio without a link = %+v, want off with 4 bars", st)
	}
	var e map[string]string
	do(t, "PUT", srv.URL+"/api/v1/radio", `{"profile":"gprs"}`, 409, &e)
	if !strings.Contains(e["error"], "start it with --radio") {
		t.Errorf("PUT radio without a link: error %q", e["error"])
	}

	l := radio.NewLink(radio.Profile{Name: "wifi"}, 99)
	radio.Attach(h, l)
	do(t, "PUT", srv.URL+"/api/v1/radio", `{"profile":"gprs"}`, 200, &st)
	if st.Profile != "gprs" || st.Bars != 2 || st.Network != "GPRS" || st.LatencyMS != 300 || st.DownKbps != 80 || st.Seed != 99 {
		t.Errorf("PUT gprs = %+v", st)
	}
	if got := l.Profile().Name; got != "gprs" {
		t.Errorf("link profile = %q after PUT, want gprs", got)
	}
	var dev handset.Device
	do(t, "GET", srv.URL+"/api/v1/device", "", 200, &dev)
	if dev.Radio.Profile != "gprs" {
		t.Errorf("device radio = %+v, want gprs", dev.Radio)
	}
	waitEvent(t, h, handset.EventRadio)
	do(t, "PUT", srv.URL+"/api/v1/radio", `{"profile":"lte"}`, 400, &e)
	if !strings.Contains(e["error"], `unknown radio profile "lte": want one of gprs, edge, 3g, wifi, flaky, off`) {
		t.Errorf("PUT lte: error %q", e["error"])
	}
	do(t, "PUT", srv.URL+"/api/v1/radio", `{}`, 400, &e)
}
