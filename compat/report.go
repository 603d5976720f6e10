package compat

import (
	"fmt"
	"strings"

	"github.com/bbsim/bbsim/internal/termtext"
)

// Table renders the rows for the terminal, one version per row, in the style of the
// lockout report, followed by the browser's errors and the problems in full.
func Table(rows []Row) string {
	t := termtext.Table("software", "browser", "gateway", "shown as", "opened", "notified", "ok")
	for _, r := range rows {
		ok := termtext.Verdict(r.OK())
		opened := termtext.OrDash(r.Opened)
		if r.Opened == "error" {
			opened = "error: " + r.ErrorCode
		}
		t.Row(r.Version, r.Browser, clip(termtext.OrDash(r.Answer), 16), termtext.OrDash(r.Shown), opened, termtext.OrDash(r.Notified), ok)
	}
	var b strings.Builder
	b.WriteString(termtext.Render(t))
	for _, r := range rows {
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "%s: %s\n", r.Version, strings.Join(strings.Fields(termtext.Line(p)), " "))
		}
	}
	return b.String()
}

// clip shortens s to n runes.
func clip(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
