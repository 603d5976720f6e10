package store

import (
	"fmt"
	"testing"
)

// TestIDFilter: every name added is "maybe" (a duplicate is never missed); of names never
// added, few are (each of those costs a lookup); an id and a source do not run together.
func TestIDFilter(t *testing.T) {
	f := newIDFilter(0)
	for i := range 200000 {
		f.add(pushName{fmt.Sprint("id-", i), "app"})
	}
	for i := range 200000 {
		if !f.mayHave(pushName{fmt.Sprint("id-", i), "app"}) {
			t.Fatalf("name %d added and not seen", i)
		}
	}
	maybe := 0
	for i := range 100000 {
		if f.mayHave(pushName{fmt.Sprint("other-", i), "app"}) {
			maybe++
		}
	}
	if maybe > 1000 {
		t.Fatalf("%d of 100,000 names never added are maybe: over 1%%", maybe)
	}
	g := newIDFilter(0)
	g.add(pushName{"ab", "c"})
	if g.mayHave(pushName{"a", "bc"}) && g.mayHave(pushName{"abc", ""}) {
		t.Fatal("names that run together alike are one")
	}
}

// BenchmarkIDFilter: a new name checked and added, as the writer does for each push, in a
// filter of a million names (8 MiB, far larger than the CPU's caches); it reports the share
// of names never added that answer "maybe".
func BenchmarkIDFilter(b *testing.B) {
	f := newIDFilter(0)
	for i := range 1 << 20 {
		f.add(pushName{fmt.Sprint("id-", i), "app"})
	}
	names := make([]pushName, 1<<16)
	for i := range names {
		names[i] = pushName{fmt.Sprint("new-", i), "app"}
	}
	maybe := 0
	b.ResetTimer()
	for i := range b.N {
		n := names[i%len(names)]
		if f.mayHave(n) {
			maybe++
		}
		f.add(n)
	}
	b.StopTimer()
	fp := 0
	for i := range 100000 {
		if f.mayHave(pushName{fmt.Sprint("other-", i), "app"}) {
			fp++
		}
	}
	b.ReportMetric(float64(fp)/100000*100, "%maybe")
}
