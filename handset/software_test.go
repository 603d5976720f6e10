package handset

import "testing"

func TestParseSoftware(t *testing.T) {
	tests := []struct {
		in         string
		transcoded bool
		browser    string
		err        string
	}{
		{"6.0.0.141", false, "WebKit", ""},
		{"6.0.0.202", false, "WebKit", ""},
		{"6.0", false, "WebKit", ""},
		{"6.0.0.203", true, "WebKit", ""},
		{"6.0.0.706", true, "WebKit", ""},
		{"6.1.0", true, "WebKit", ""},
		{"5.0.0.1036", true, "BlackBerry Browser", ""},
		{"7.1.0", true, "WebKit", ""},
		{"7", false, "", `device software "7": want a version such as 7.1.0 or 6.0.0.141 (see --device-software list)`},
		{"7.x", false, "", `device software "7.x": "x" is not a number (want a version such as 7.1.0)`},
		{"10.2.1", false, "", `device software "10.2.1": BlackBerry Device Software ran from 3.x to 7.x`},
	}
	for _, tt := range tests {
		sw, err := ParseSoftware(tt.in)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("ParseSoftware(%q) = %v, want error %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSoftware(%q) = %v", tt.in, err)
			continue
		}
		if sw.RendersTranscoded() != tt.transcoded || sw.Browser() != tt.browser {
			t.Errorf("ParseSoftware(%q): renders transcoded %v, browser %q; want %v, %q", tt.in, sw.RendersTranscoded(), sw.Browser(), tt.transcoded, tt.browser)
		}
	}
	for _, k := range KnownSoftware {
		if _, err := ParseSoftware(k.Version); err != nil {
			t.Errorf("known version %s: %v", k.Version, err)
		}
	}
}

func TestSetSoftware(t *testing.T) {
	h, err := New(Options{Software: "6.0.0.141"})
	if err != nil {
		t.Fatal(err)
	}
	if d := h.Device(); d.Software.Version != "6.0.0.141" || d.Software.RendersTranscoded {
		t.Fatalf("device software = %+v", d.Software)
	}
	if _, err := h.SetSoftware("6.0.0.203"); err != nil {
		t.Fatal(err)
	}
	ev := h.Events(0)
	if len(ev) == 0 || ev[len(ev)-1].Kind != EventSoftware || ev[len(ev)-1].Fields["previous"] != "6.0.0.141" {
		t.Errorf("events = %+v, want a %s event from 6.0.0.141", ev, EventSoftware)
	}
	if _, err := New(Options{Software: "2.1"}); err == nil {
		t.Error("New with software 2.1: no error")
	}
}

// TestSoftwarePersisted: a version set at run time outlives a restart with the same
// --device-software, also through a compaction of the journal; another --device-software
// wins.
func TestSoftwarePersisted(t *testing.T) {
	dir := t.TempDir()
	open := func(opt string) *Handset {
		t.Helper()
		h, err := New(Options{Dir: dir, Software: opt})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	h := open("")
	if _, err := h.SetSoftware("6.0.0.141"); err != nil {
		t.Fatal(err)
	}
	h.Close()
	for i, tt := range []struct{ opt, want string }{
		{"", "6.0.0.141"}, // replayed
		{"", "6.0.0.141"}, // compacted when reopened, replayed again
		{DefaultSoftware, "6.0.0.141"},
		{"5.0.0", "5.0.0"}, // another option: a new choice
	} {
		h := open(tt.opt)
		if got := h.Software().String(); got != tt.want {
			t.Errorf("reopen %d with %q: software %s, want %s", i, tt.opt, got, tt.want)
		}
		h.Close()
	}
}
