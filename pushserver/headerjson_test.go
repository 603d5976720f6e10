package pushserver

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
)

// FuzzHeaderJSON: what headerJSON writes reads back as what json.Marshal writes does.
func FuzzHeaderJSON(f *testing.F) {
	f.Add("Content-Type", "text/html", "X-Rim-Push-Title", "Scores & more <b>")
	f.Add("Content-Location", "http://example.test/a?b=1&c=2", "X-Quote", `say "hi"`)
	f.Add("X-Back", `a\b`, "X-Ctl", "a\x01b\tc")
	f.Add("X-Utf8", "café", "X-Bad", "\xff\xfe")
	f.Add("", "", "X-Empty", "")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		h := http.Header{k1: {v1, v2}, k2: {v2}, "X-Nil": nil}
		got, err := headerJSON(h)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		var a, b http.Header
		if err := json.Unmarshal(got, &a); err != nil {
			t.Fatalf("headerJSON wrote %q: %v", got, err)
		}
		if err := json.Unmarshal(want, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("headerJSON %q reads back as %v, json.Marshal's as %v", got, a, b)
		}
	})
}

func BenchmarkHeaderJSON(b *testing.B) {
	h := http.Header{"Content-Type": {"text/html"}, "X-Rim-Push-Type": {"Browser-Content"},
		"Content-Location": {"http://example.com/bench"}, "X-Rim-Push-Title": {"Scores"}}
	b.Run("headerJSON", func(b *testing.B) {
		for b.Loop() {
			headerJSON(h)
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		for b.Loop() {
			json.Marshal(h)
		}
	})
}
