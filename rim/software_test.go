package rim

import "testing"

func TestSoftwareCapabilities(t *testing.T) {
	tests := []struct {
		v                           string
		appAcks, deleteURL, renders bool
		browser                     string
	}{
		{"3.8.0", false, false, true, "BlackBerry Browser"},
		{"3.8.0.99", false, false, true, "BlackBerry Browser"},
		{"4.0", true, false, true, "BlackBerry Browser"},
		{"4.1.0.120", true, false, true, "BlackBerry Browser"},
		{"4.2.0", true, true, true, "BlackBerry Browser"},
		{"5.0.0.1036", true, true, true, "BlackBerry Browser"},
		{"6.0.0.141", true, true, false, "WebKit"},
		{"6.0.0.203", true, true, true, "WebKit"},
		{"7.1.0", true, true, true, "WebKit"},
	}
	for _, tt := range tests {
		sw, err := ParseSoftware(tt.v)
		if err != nil {
			t.Fatalf("ParseSoftware(%q) = %v", tt.v, err)
		}
		if sw.AppAcks() != tt.appAcks || sw.FetchesDeleteURL() != tt.deleteURL || sw.RendersTranscoded() != tt.renders || sw.Browser() != tt.browser {
			t.Errorf("%s: app acks %v, delete URL %v, renders transcoded %v, browser %q; want %v, %v, %v, %q", tt.v,
				sw.AppAcks(), sw.FetchesDeleteURL(), sw.RendersTranscoded(), sw.Browser(), tt.appAcks, tt.deleteURL, tt.renders, tt.browser)
		}
	}
	if !(Software{}).IsZero() {
		t.Error("Software{}.IsZero() = false")
	}
}
