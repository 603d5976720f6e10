package lockout

import (
	"fmt"
	"strings"
	"time"

	"github.com/bbsim/bbsim/internal/termtext"
)

// Table renders the rows as a table for the terminal, one scenario per row, followed by
// the problems found.
func Table(rows []Row) string {
	t := termtext.Table("scenario", "POP3 login", "2nd IMAP", "webmail", "handset", "BYE", "back in", "recon", "delay", "lost/dup", "ok")
	for _, r := range rows {
		ok := termtext.Verdict(r.OK())
		if r.Err != "" {
			t.Row(r.Scenario, "error (below)", "", "", "", "", "", "", "", "", ok)
			continue
		}
		bye := "-"
		if r.Bye != "" {
			bye = "yes"
		}
		t.Row(r.Scenario, short(r.POP3), short(r.IMAP), short(r.Webmail), r.HandsetMode, bye,
			dur(r.BackIn), fmt.Sprint(r.Reconnects), dur(r.MailDelay), fmt.Sprintf("%d/%d", r.Lost, r.Duplicated), ok)
	}
	var b strings.Builder
	b.WriteString(termtext.Render(t))
	// What the servers said, in full, below the table, which stays within 100 columns.
	for _, r := range rows {
		name := termtext.Line(r.Scenario)
		for _, l := range []struct{ what, text string }{
			{"error", r.Err}, {"POP3", r.POP3}, {"2nd IMAP", r.IMAP}, {"webmail", r.Webmail}, {"BYE", r.Bye},
		} {
			if l.text != "" {
				fmt.Fprintf(&b, "%s: %s: %s\n", name, l.what, strings.Join(strings.Fields(termtext.Line(l.text)), " "))
			}
		}
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "%s: problem: %s\n", name, termtext.Line(p))
		}
	}
	return b.String()
}

// short is the gist of a server's reply for the table: its status and any bracketed
// response code ("-ERR [IN-USE]", "NO [INUSE]", "HTTP 423", "inbox"); the full text is
// printed below the table.
func short(s string) string {
	s = strings.TrimPrefix(strings.Join(strings.Fields(termtext.Line(s)), " "), "SELECT ")
	if i := strings.IndexByte(s, ']'); i >= 0 && i < 16 {
		return s[:i+1]
	}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	if f := strings.Fields(s); len(f) > 0 && (f[0] == "+OK" || f[0] == "OK") {
		return f[0]
	}
	return clip(s, 14)
}

// clip shortens what a server said to n runes, without its control characters.
func clip(s string, n int) string {
	s = strings.Join(strings.Fields(termtext.Line(s)), " ")
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

func dur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}
