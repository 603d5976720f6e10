package pap

import (
	"strings"
	"testing"
	"time"

	"github.com/bbsim/bbsim/rim"
)

func FuzzParse(f *testing.F) {
	f.Add(`<?xml version="1.0"?>` + "\r\n" + `<!DOCTYPE pap PUBLIC "-//WAPFORUM//DTD PAP 2.0//EN" "http://www.wapforum.org/DTD/pap_2.0.dtd" [<?wap-pap-ver supported-versions="2.0,1.*"?>]>` + "\r\n" + `<pap><push-message push-id="1" deliver-before-timestamp="2026-11-23T10:00:00Z"><address address-value="WAPPUSH=alice%40bbsim.test%3A7874/TYPE=USER@rim.net"/><quality-of-service delivery-method="confirmed"/></push-message></pap>`)
	f.Add(`<?xml version="1.0"?>` + Doctype(Version21) + `<pap><statusquery-message push-id="x"><address address-value="2100000A"/></statusquery-message></pap>`)
	f.Add(`<pap><cancel-message push-id="x"/></pap>`)
	f.Add(`<!DOCTYPE pap [<!ENTITY a "x">]><pap><cancel-message push-id="&a;"/></pap>`)
	f.Add(`<pap><push-message push-id="1"/><cancel-message push-id="2"/></pap>`)
	f.Add(`<?xml version="1.0" encoding="ISO-8859-1"?><pap/>`)
	f.Add(`<pap>`)
	f.Fuzz(func(t *testing.T, doc string) {
		d, err := Parse([]byte(doc))
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		n := 0
		if d.Push != nil {
			n++
			for _, a := range d.Push.Addresses {
				rim.ParseAddress(a.Value)
			}
		}
		if d.StatusQuery != nil {
			n++
		}
		if d.Cancel != nil {
			n++
		}
		if n != 1 {
			t.Fatalf("Parse accepted %d messages", n)
		}
		if strings.Contains(strings.ToUpper(doc), "<!ENTITY") {
			t.Fatalf("Parse accepted an entity declaration: %q", doc)
		}
	})
}

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, version, err string
	}{
		{`<pap><push-message push-id="1" source-reference="a"><address address-value="push_all"/></push-message></pap>`, Version20, ""},
		{`<pap><statusquery-message push-id="1"/></pap>`, Version20, ""},
		{`<pap><cancel-message push-id="1"/></pap>`, Version20, ""},
		// Kannel's test_ppg, -H and its sample files.
		{`<?xml version="1.0"?><!DOCTYPE pap PUBLIC "-//WAPFORUM//DTD PAP 1.0//EN" "http://www.wapforum.org/DTD/pap_1.0.dtd"><pap><push-message push-id="9"><address address-value="WAPPUSH=+358408676001/TYPE=PLMN@ppg.carrier.com"/></push-message></pap>`, Version10, ""},
		{`<?xml version="1.0"?><!DOCTYPE pap PUBLIC "-//WAPFORUM//DTD PAP//EN" "http://www.wapforum.org/DTD/pap_1.0.dtd"><pap><cancel-message push-id="9"/></pap>`, Version10, ""},
		{`<?xml version="1.0"?><!DOCTYPE pap PUBLIC "-//WAPFORUM//DTD PAP 2.1//EN" "http://www.openmobilealliance.org/tech/DTD/pap_2.1.dtd"><pap><cancel-message push-id="9"/></pap>`, Version21, ""},
		{`<!DOCTYPE pap PUBLIC "-//WAPFORUM//DTD PAP 3.0//EN" "x"><pap><cancel-message push-id="9"/></pap>`, "", "not PAP"},
		{`<?xml version="1.0"?><!DOCTYPE pap [<!ENTITY x "y">]><pap><push-message push-id="&x;"/></pap>`, "", "entity"},
		{`<pap><push-message push-id="&x;"/></pap>`, "", "entity"},
		{`<pap></pap>`, "", "exactly one"},
		{`<pap><push-message`, "", "EOF"},
		{`not xml`, "", "outside the root"},
	}
	for _, tt := range tests {
		m, err := Parse([]byte(tt.in))
		if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("Parse(%q) = %v, want error %q", tt.in, err, tt.err)
			continue
		}
		if err == nil && m.Version != tt.version {
			t.Errorf("Parse(%q).Version = %q, want %q", tt.in, m.Version, tt.version)
		}
	}
}

func TestAnswersRoundTrip(t *testing.T) {
	t.Parallel()
	n := ResultNotification(Version10, Sender{"/pap", "x"}, "id<1>", time.Unix(0, 0),
		Result{Code: 4501, Desc: `refused: "no"`, State: "undeliverable", At: time.Unix(60, 0), Address: "2100000A"})
	if !strings.Contains(string(n), "PAP 1.0") {
		t.Errorf("ResultNotification(1.0) = %s, want a PAP 1.0 DOCTYPE", n)
	}
	got, err := ParseNotification(n)
	want := Notification{PushID: "id<1>", State: "undeliverable", Code: 4501, Desc: `refused: "no"`, Address: "2100000A"}
	if err != nil || got != want {
		t.Errorf("ParseNotification = %+v, %v; want %+v", got, err, want)
	}
	if code, desc := AnswerCode(PushResponse(Version20, Sender{}, "p", time.Now(), 1001, "ok")); code != 1001 || desc != "ok" {
		t.Errorf("AnswerCode(push-response) = %d, %q", code, desc)
	}
}
