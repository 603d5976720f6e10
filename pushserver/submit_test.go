package pushserver

import (
	"errors"
	"testing"

	"github.com/bbsim/bbsim/rim"
)

// TestSubmissionReliability: the reliability words of RIM push, PAP and the BIS push API
// map to the three a push is kept with; any other is a bad submission.
func TestSubmissionReliability(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string
	}{
		{"", rim.ReliabilityTransport},
		{"transport", rim.ReliabilityTransport},
		{" Transport ", rim.ReliabilityTransport},
		{"unconfirmed", rim.ReliabilityTransport},
		{"preferconfirmed", rim.ReliabilityTransport},
		{"NotSpecified", rim.ReliabilityTransport},
		{"application", rim.ReliabilityApplication},
		{"confirmed", rim.ReliabilityApplication},
		{"application-level", rim.ReliabilityApplication},
		{"Application-Preferred", rim.ReliabilityApplicationPreferred},
	}
	for _, tt := range tests {
		if got, err := submissionReliability(tt.in); err != nil || got != tt.want {
			t.Errorf("submissionReliability(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"best-effort", "applications"} {
		if got, err := submissionReliability(in); !errors.Is(err, ErrBadSubmission) {
			t.Errorf("submissionReliability(%q) = %q, %v; want ErrBadSubmission", in, got, err)
		}
	}
}
