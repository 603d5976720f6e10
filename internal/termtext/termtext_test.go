package termtext

import "testing"

func TestClean(t *testing.T) {
	tests := []struct {
		in, clean, line, styles string
	}{
		{"plain", "plain", "plain", "plain"},
		{"TUIESC\x1b]0;pwned-tui\x07\x1b[2J", "TUIESC]0;pwned-tui[2J", "TUIESC]0;pwned-tui[2J", "TUIESC]0;pwned-tui[2J"},
		{"a\nb\tc\r", "a\nb\tc", "a b c ", "a\nb\tc"},
		{"c1\u009b2J del\x7f", "c12J del", "c12J del", "c12J del"},
		{"bad\xffutf8", "bad\uFFFDutf8", "bad\uFFFDutf8", "bad\uFFFDutf8"},
		{"\x1b[1mbold\x1b[0m", "[1mbold[0m", "[1mbold[0m", "\x1b[1mbold\x1b[0m"},
		{"\x1b[38;5;214mx\x1b[2K", "[38;5;214mx[2K", "[38;5;214mx[2K", "\x1b[38;5;214mx[2K"},
		{"héllo ▣", "héllo ▣", "héllo ▣", "héllo ▣"},
	}
	for _, tt := range tests {
		if got := Clean(tt.in); got != tt.clean {
			t.Errorf("Clean(%q) = %q, want %q", tt.in, got, tt.clean)
		}
		if got := Line(tt.in); got != tt.line {
			t.Errorf("Line(%q) = %q, want %q", tt.in, got, tt.line)
		}
		if got := KeepStyles(tt.in); got != tt.styles {
			t.Errorf("KeepStyles(%q) = %q, want %q", tt.in, got, tt.styles)
		}
	}
}
