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
