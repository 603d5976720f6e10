package serveall

import (
	"errors"
	"net/http"
	"testing"
)

func TestRun(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	tests := []struct {
		name      string
		results   []error
		want      error
		wantStops int
	}{
		{"none", nil, http.ErrServerClosed, 0},
		{"all closed", []error{http.ErrServerClosed, http.ErrServerClosed}, http.ErrServerClosed, 0},
		{"one fails", []error{http.ErrServerClosed, boom}, boom, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stops := 0
			var serves []func() error
			for _, r := range tc.results {
				serves = append(serves, func() error { return r })
			}
			err := Run(func() error { stops++; return nil }, serves...)
			if !errors.Is(err, tc.want) {
				t.Errorf("Run = %v, want %v", err, tc.want)
			}
			if stops != tc.wantStops {
				t.Errorf("stop called %d times, want %d", stops, tc.wantStops)
			}
		})
	}
}

// A failing serve stops the others, which are blocked until then.
func TestRunStopsOthers(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	stopped := make(chan struct{})
	err := Run(func() error { close(stopped); return nil },
		func() error { <-stopped; return http.ErrServerClosed },
		func() error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want boom", err)
	}
}
