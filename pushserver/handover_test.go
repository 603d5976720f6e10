package pushserver

import (
	"testing"
	"time"
)

// TestForgetFinal: recipients made final are forgotten once their state has been stored
// for longer than the cut-off, oldest first; one whose state is not stored yet stays.
func TestForgetFinal(t *testing.T) {
	h := newShared(&Server{}, "a")
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	h.final[3] = time.Time{} // not stored yet
	h.stored(1, t0)
	h.stored(2, t0.Add(10*time.Second))
	h.forgetFinal(t0.Add(5 * time.Second))
	if _, ok := h.final[1]; ok {
		t.Errorf("recipient 1, stored before the cut-off, is still remembered")
	}
	for _, seq := range []int64{2, 3} {
		if _, ok := h.final[seq]; !ok {
			t.Errorf("recipient %d is forgotten", seq)
		}
	}
	if len(h.finalOrder) != 1 || h.finalOrder[0].seq != 2 {
		t.Errorf("order kept = %+v, want recipient 2 alone", h.finalOrder)
	}
	h.forgetFinal(t0.Add(time.Minute))
	if len(h.final) != 1 || len(h.finalOrder) != 0 {
		t.Errorf("after a later cut-off: final %v, order %+v; want only the unstored 3", h.final, h.finalOrder)
	}
}
