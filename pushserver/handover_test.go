package pushserver

import (
	"testing"
	"time"
)

// TestForgetFinal: recipients made final are forgotten once their state has been stored
// for longer than the cut-off, oldest first; one whose state is not stored yet stays.
func TestForgetFinal(t *testing.T) {
	s := newShared(&Server{}, "a")
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	s.final[3] = time.Time{} // not stored yet
	s.stored(1, t0)
	s.stored(2, t0.Add(10*time.Second))
	s.forgetFinal(t0.Add(5 * time.Second))
	if _, ok := s.final[1]; ok {
		t.Errorf("recipient 1, stored before the cut-off, is still remembered")
	}
	for _, seq := range []int64{2, 3} {
		if _, ok := s.final[seq]; !ok {
			t.Errorf("recipient %d is forgotten", seq)
		}
	}
	if len(s.finalOrder) != 1 || s.finalOrder[0].seq != 2 {
		t.Errorf("order kept = %+v, want recipient 2 alone", s.finalOrder)
	}
	s.forgetFinal(t0.Add(time.Minute))
	if len(s.final) != 1 || len(s.finalOrder) != 0 {
		t.Errorf("after a later cut-off: final %v, order %+v; want only the unstored 3", s.final, s.finalOrder)
	}
}
