package bis

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseControl(t *testing.T) {
	tests := []struct {
		in, err string
	}{
		{`<pap><push-message push-id="1" source-reference="a"><address address-value="push_all"/></push-message></pap>`, ""},
		{`<pap><statusquery-message push-id="1"/></pap>`, ""},
		{`<pap><cancel-message push-id="1"/></pap>`, ""},
		{`<?xml version="1.0"?><!DOCTYPE pap [<!ENTITY x "y">]><pap><push-message push-id="&x;"/></pap>`, "entity"},
		{`<pap><push-message push-id="&x;"/></pap>`, "entity"},
		{`<pap></pap>`, "no push-message"},
		{`<pap><push-message`, "EOF"},
		{`not xml`, "EOF"},
	}
	for _, tt := range tests {
		_, err := parseControl([]byte(tt.in))
		if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%q: %v, want %q", tt.in, err, tt.err)
		}
	}
}

func FuzzParseControl(f *testing.F) {
	f.Add([]byte(`<?xml version="1.0"?><!DOCTYPE pap PUBLIC "-//WAPFORUM//DTD PAP 2.1//EN" "http://www.openmobilealliance.org/tech/DTD/pap_2.1.dtd"><pap><push-message push-id="1" source-reference="a" deliver-before-timestamp="2030-01-01T00:00:00Z"><address address-value="2100000A"/><quality-of-service delivery-method="confirmed"/></push-message></pap>`))
	f.Add([]byte(`<pap><statusquery-message push-id="x"/></pap>`))
	f.Add([]byte(`<!DOCTYPE pap [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;">]><pap/>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		doc, err := parseControl(b)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		n := 0
		for _, set := range []bool{doc.Push != nil, doc.Status != nil, doc.Cancel != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("accepted a document with %d messages in it: %q", n, b)
		}
		if bytes.Contains(bytes.ToUpper(b), []byte("<!ENTITY")) {
			t.Fatalf("accepted an entity declaration: %q", b)
		}
	})
}
