package browserpush

import (
	"fmt"
	"testing"
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
