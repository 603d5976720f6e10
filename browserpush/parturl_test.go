package browserpush

import (
	"net/url"
	"testing"
)

func TestPartURL(t *testing.T) {
	t.Parallel()
	base, _ := url.Parse("cache://example.com/news/MultipartExample")
	tests := []struct {
		h    map[string][]string
		want string
	}{
		{map[string][]string{"Content-Location": {"waterloo.gif"}}, "cache://example.com/news/waterloo.gif"},
		{map[string][]string{"Content-Location": {"/img/a.gif"}}, "cache://example.com/img/a.gif"},
		{map[string][]string{"Content-Location": {"http://cdn.test/b.gif"}}, "http://cdn.test/b.gif"},
		{map[string][]string{"Content-Id": {"<logo@example.com>"}}, "cid:logo@example.com"},
		{map[string][]string{"Content-Type": {"image/gif"}}, ""},
	}
	for _, tt := range tests {
		if got := partURL(base, tt.h); got != tt.want {
			t.Errorf("partURL(%v) = %q, want %q", tt.h, got, tt.want)
		}
	}
}
