package compat

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/lipgloss/table"

	"github.com/bbsim/bbsim/internal/termtext"
)

// Table renders the rows for the terminal, one version per row, in the style of the
// lockout report, followed by the browser's errors and the problems in full.
func Table(rows []Row) string {
	head := lipgloss.NewStyle().Bold(true)
	bad := lipgloss.NewStyle().Foreground(lipgloss.Color("9"))
	t := table.New().
		Border(lipgloss.NormalBorder()).BorderColumn(false).BorderLeft(false).BorderRight(false).
		Headers("software", "browser", "gateway", "shown as", "opened", "notified", "ok").
		StyleFunc(func(row, col int) lipgloss.Style {
			if row == table.HeaderRow {
				return head.Padding(0, 1, 0, 0)
			}
			return lipgloss.NewStyle().Padding(0, 1, 0, 0)
		})
	for _, r := range rows {
		ok := "yes"
		if !r.OK() {
			ok = bad.Render("NO")
		}
		opened := orDash(r.Opened)
		if r.Opened == "error" {
			opened = "error: " + r.ErrorCode
		}
		t.Row(r.Version, r.Browser, clip(orDash(r.Answer), 16), orDash(r.Shown), opened, orDash(r.Notified), ok)
	}
	var b strings.Builder
	for _, l := range strings.Split(t.Render(), "\n") {
		b.WriteString(strings.TrimRight(l, " "))
		b.WriteByte('\n')
	}
	for _, r := range rows {
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "%s: %s\n", r.Version, strings.Join(strings.Fields(termtext.Line(p)), " "))
		}
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clip shortens s to n runes.
func clip(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
