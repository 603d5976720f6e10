package rim

import (
	"maps"
	"strings"
	"testing"
)

func TestParseMediaType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		mt     string
		params map[string]string
		err    bool
	}{
		{`multipart/related; type="application/xml"; boundary=asdlfkjiurwghasf`, "multipart/related",
			map[string]string{"type": "application/xml", "boundary": "asdlfkjiurwghasf"}, false},
		// The BIS push clients copied all over the web.
		{`multipart/related; boundary=mPsbVQo0a68eIL3OAxnm; type=application/xml`, "multipart/related",
			map[string]string{"type": "application/xml", "boundary": "mPsbVQo0a68eIL3OAxnm"}, false},
		{`Multipart/Related ;  Boundary = abc ; TYPE=application/xml;`, "multipart/related",
			map[string]string{"type": "application/xml", "boundary": "abc"}, false},
		{`text/html; charset=UTF-8;`, "text/html", map[string]string{"charset": "UTF-8"}, false},
		{`multipart/mixed; boundary="a b;c"; x=1/2`, "multipart/mixed", map[string]string{"boundary": "a b;c", "x": "1/2"}, false},
		{`multipart/related;; boundary=x`, "multipart/related", map[string]string{"boundary": "x"}, false},
		{``, "", nil, true},
		{`text`, "", nil, true},
		{`/xml; a=b`, "", nil, true},
	}
	for _, tt := range tests {
		mt, params, err := ParseMediaType(tt.in)
		if (err != nil) != tt.err || mt != tt.mt || (!tt.err && !maps.Equal(params, tt.params)) {
			t.Errorf("ParseMediaType(%q) = %q, %v, %v; want %q, %v, error %v", tt.in, mt, params, err, tt.mt, tt.params, tt.err)
		}
	}
}

func TestSplitMultipart(t *testing.T) {
	t.Parallel()
	const bisCT = "multipart/related; boundary=mPsbVQo0a68eIL3OAxnm; type=application/xml"
	tests := []struct {
		name, ct, body string
		want           []string
		err            string
	}{
		{"bis tail", bisCT, "--mPsbVQo0a68eIL3OAxnm\r\nContent-Type: application/xml\r\n\r\n<pap/>\r\n--mPsbVQo0a68eIL3OAxnm\r\nContent-Type: text/plain\r\n\r\nhello\r\n--mPsbVQo0a68eIL3OAxnm--\n\r",
			[]string{"<pap/>", "hello"}, ""},
		{"lf, preamble, epilogue", "multipart/related; boundary=b", "preamble\n--b\nContent-Type: a/b\n\none\n--b\n\ntwo\n--b--\nepilogue\n",
			[]string{"one", "two"}, ""},
		// Kannel's test_ppg -S writes its extra header where the empty line should be.
		{"header in place of the empty line", "multipart/related; boundary=asdlfkjiurwghasf; type=\"application/xml\"",
			"--asdlfkjiurwghasf\nContent-Type: application/xml\n\n<pap/>\n\n--asdlfkjiurwghasf\nContent-Type: text/plain\nX-RIM-Push-Type: Browser-Message\naGk=\n--asdlfkjiurwghasf--\n",
			[]string{"<pap/>\n", "aGk="}, ""},
		{"folded header, colon in body", "multipart/mixed; boundary=b", "--b\r\nContent-Type: text/html;\r\n charset=utf-8\r\n\r\n<p>Note: x</p>\r\n--b--", []string{"<p>Note: x</p>"}, ""},
		{"no boundary param", "multipart/related; type=application/xml", "--x\r\n\r\na\r\n--x--", nil, "usable boundary"},
		{"boundary not in body", "multipart/related; boundary=zz", "--x\r\n\r\na\r\n--x--", nil, "usable boundary"},
		{"not multipart", "text/plain", "x", nil, "not multipart"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts, err := SplitMultipart(tt.ct, []byte(tt.body), 8)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("SplitMultipart = %v, want error with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("SplitMultipart: %v", err)
			}
			var got []string
			for _, p := range parts {
				got = append(got, string(p.Body))
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("SplitMultipart bodies = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDecodeBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		h    map[string][]string
		in   string
		want string
		dec  bool
	}{
		{map[string][]string{"Content-Transfer-Encoding": {"base64"}}, "PHA+aGk8\r\nL3A+\r\n", "<p>hi</p>", true},
		{map[string][]string{"Content-Encoding": {"BASE64"}}, "aGk=", "hi", true},
		{map[string][]string{"Content-Transfer-Encoding": {"quoted-printable"}}, "caf=C3=A9 =\r\nau lait", "café au lait", true},
		{map[string][]string{"Content-Transfer-Encoding": {"8bit"}}, "aGk=", "aGk=", false},
		{map[string][]string{"Content-Encoding": {"gzip"}}, "x", "x", false},
	}
	for _, tt := range tests {
		got, dec, err := DecodeBody(tt.h, []byte(tt.in))
		if err != nil || string(got) != tt.want || dec != tt.dec {
			t.Errorf("DecodeBody(%v, %q) = %q, %v, %v; want %q, %v", tt.h, tt.in, got, dec, err, tt.want, tt.dec)
		}
	}
	if _, _, err := DecodeBody(map[string][]string{"Content-Transfer-Encoding": {"base64"}}, []byte("!!!")); err == nil {
		t.Error("DecodeBody(bad base64) = nil error")
	}
}

func TestNormalizePIN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"2100000a", "2100000A", true}, {" 2100000A\t", "2100000A", true}, {"2100000", "2100000", false},
		{"2100000G", "2100000G", false}, {"", "", false},
	}
	for _, tt := range tests {
		if got, ok := NormalizePIN(tt.in); got != tt.want || ok != tt.ok {
			t.Errorf("NormalizePIN(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Address
		err  bool
	}{
		{"WAPPUSH=simulator%40pushme.com%3A7874/TYPE=USER@rim.net", Address{Dest: "simulator@pushme.com", Port: 7874}, false},
		{"wappush=2100000A%3A100/type=user@blackberry.com", Address{Dest: "2100000A", Port: 100}, false},
		{"2100000A", Address{Dest: "2100000A"}, false},
		{"$IT", Address{Dest: "$IT"}, false},
		{"push_all", Address{All: true}, false},
		{"WAPPUSH=x%3A0/TYPE=USER@rim.net", Address{}, true},
		{"WAPPUSH=x/TYPE=PLMN", Address{}, true},
		{" ", Address{}, true},
	}
	for _, tt := range tests {
		got, err := ParseAddress(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseAddress(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
	if got := FormatAddress("simulator@pushme.com", 7874); got != "WAPPUSH=simulator%40pushme.com%3A7874/TYPE=USER@rim.net" {
		t.Errorf("FormatAddress = %q", got)
	}
	for _, st := range []State{StateQueued, StatePending} {
		if ms, code := MessageState(st, 0); ms != MessageStatePending || code != CodeAccepted {
			t.Errorf("MessageState(%q) = %q, %d; want pending, %d", st, ms, code, CodeAccepted)
		}
	}
}

func TestTranscodes(t *testing.T) {
	tests := []struct {
		v, mt string
		want  bool
	}{
		{"", "text/html", true},
		{"*/*", "text/html", true},
		{"text/*", "text/html", true},
		{"TEXT/HTML", "text/html", true},
		{"*/*", "application/xhtml+xml", true},
		{"none", "text/html", false},
		{"image/*", "text/html", false},
		{"image/jpeg, text/vnd.wap.wml", "text/html", false},
		{"*/*, !text/html", "text/html", false},
		{"!text/html", "text/html", false},
		{"*/*", "image/png", false},
		{"", "text/plain", false},
	}
	for _, tt := range tests {
		if got := Transcodes(tt.v, tt.mt); got != tt.want {
			t.Errorf("Transcodes(%q, %q) = %v, want %v", tt.v, tt.mt, got, tt.want)
		}
	}
}
