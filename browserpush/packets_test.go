package browserpush

import (
	"fmt"
	"testing"
	"time"
)

func TestParsePacket(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    packetInfo
		wantErr bool
	}{
		{"0/1", packetInfo{0, 1}, false},
		{" 3 / 10 ", packetInfo{3, 10}, false},
		{"9/10", packetInfo{9, 10}, false},
		{"10/10", packetInfo{}, true},
		{"-1/2", packetInfo{}, true},
		{"0/0", packetInfo{}, true},
		{"1", packetInfo{}, true},
		{"a/b", packetInfo{}, true},
		{"0/65537", packetInfo{}, true},
	}
	for _, tc := range tests {
		got, err := parsePacket(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parsePacket(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestDoneRing(t *testing.T) {
	t.Parallel()
	a := newAssembler(1 << 20)
	for i := range doneKeep + 1 {
		a.finish(fmt.Sprint(i), result{})
	}
	if _, ok := a.finished("0"); ok {
		t.Errorf("finished(0) kept after %d more pushes", doneKeep)
	}
	for _, k := range []string{"1", fmt.Sprint(doneKeep)} {
		if _, ok := a.finished(k); !ok {
			t.Errorf("finished(%s) forgotten", k)
		}
	}
	a.finish("1", result{err: errf(statusMalformed, "x")}) // a re-recorded push keeps its slot
	if res, _ := a.finished("1"); res.err == nil || len(a.done) != doneKeep {
		t.Errorf("re-recorded push: %+v, %d kept", res, len(a.done))
	}
}

func TestAssemblerEvictsAbandonedPushes(t *testing.T) {
	t.Parallel()
	a := newAssembler(1 << 20)
	for i := range maxAssemblies + 5 {
		if _, perr := a.add(t.Context(), time.Second, pushKey{id: fmt.Sprint("abandoned-", i)}, packetInfo{0, 3}, -1, []byte("x")); perr != nil {
			t.Fatalf("add(abandoned-%d) = %v", i, perr)
		}
	}
	if n := len(a.active); n != maxAssemblies {
		t.Fatalf("%d pushes kept, want %d", n, maxAssemblies)
	}
	if _, ok := a.active[pushKey{id: "abandoned-0"}]; ok {
		t.Fatal("the oldest abandoned push was kept")
	}
	// A push too large for the limit in total is refused however it is cut.
	small := newAssembler(10)
	if _, perr := small.add(t.Context(), time.Second, pushKey{id: "big"}, packetInfo{0, 2}, -1, []byte("123456")); perr != nil {
		t.Fatal(perr)
	}
	if _, perr := small.add(t.Context(), time.Second, pushKey{id: "big"}, packetInfo{1, 2}, -1, []byte("123456")); perr == nil || perr.status != statusResources {
		t.Fatalf("second half = %v, want 237", perr)
	}
}
