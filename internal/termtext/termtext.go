// Package termtext makes text that came from outside (mail subjects, push titles, server
// replies) safe to print to a terminal: a control character in it could otherwise clear
// the screen, move the cursor or retitle the window (ESC sequences, BEL, C1 controls).
package termtext

import (
	"strings"
	"unicode/utf8"
)

// Clean returns s without control characters (C0 but newline and tab, DEL, C1), with
// invalid UTF-8 shown as U+FFFD. An escape sequence loses its ESC and shows as plain text.
func Clean(s string) string {
	if safe(s, true) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' {
			return r
		}
		if isControl(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

// Line is Clean for one-line fields: newlines and tabs become spaces as well.
func Line(s string) string {
	if safe(s, false) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || r == '\r' {
			return ' '
		}
		if isControl(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

// KeepStyles cleans a screen bbsim drew itself: it keeps newlines and the SGR sequences
// (ESC [ … m, colours and bold) that its styles write, and removes every other control
// character, so that outside text inside the screen can do no more than colour itself.
func KeepStyles(s string) string {
	if safe(s, true) && !strings.ContainsRune(s, 0x1b) {
		return s
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == 0x1b {
			if m := sgrLen(s[i:]); m > 0 {
				b.WriteString(s[i : i+m])
				i += m
				continue
			}
		}
		if r == '\n' || r == '\t' || !isControl(r) {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// sgrLen returns the length of the SGR sequence s starts with, or 0.
func sgrLen(s string) int {
	if len(s) < 3 || s[1] != '[' {
		return 0
	}
	for i := 2; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 'm':
			return i + 1
		case c >= '0' && c <= '9' || c == ';' || c == ':':
		default:
			return 0
		}
	}
	return 0
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) }

// safe reports whether s is valid UTF-8 without control characters (newline and tab
// allowed when multiline).
func safe(s string, multiline bool) bool {
	for _, r := range s {
		if r == utf8.RuneError || isControl(r) && !(multiline && (r == '\n' || r == '\t')) {
			return false
		}
	}
	return true
}
