package bench

import (
	"strings"
	"testing"
	"time"
)

func TestQuickRun(t *testing.T) {
	r := Run(t.Context(), Options{Dir: t.TempDir(), Quick: true, Only: []string{"push", "receiver"}})
	if r.Cores == 0 || len(r.Figures) != 3 {
		t.Fatalf("report %+v", r)
	}
	for _, f := range r.Figures {
		if f.Err != "" || f.N == 0 || (f.Rate == 0 && f.Median == 0) {
			t.Errorf("figure %+v", f)
		}
	}
	if tb := r.Table(); !strings.Contains(tb, "receiver direct pushes") || !strings.Contains(tb, "cores") {
		t.Errorf("table:\n%s", tb)
	}
}

func TestQuantile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if q := quantile(ds, 0.5); q != 50 {
		t.Errorf("median %v", q)
	}
	if q := quantile(ds, 0.99); q != 99 {
		t.Errorf("p99 %v", q)
	}
	if q := quantile(nil, 0.5); q != 0 {
		t.Errorf("empty %v", q)
	}
}
