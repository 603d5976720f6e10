package lockout

import (
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/lipgloss/table"

	"github.com/bbsim/bbsim/internal/termtext"
)

// Table renders the rows as a table for the terminal, one scenario per row, followed by
// the problems found.
func Table(rows []Row) string {
	head := lipgloss.NewStyle().Bold(true)
	bad := lipgloss.NewStyle().Foreground(lipgloss.Color("9"))
	t := table.New().
		Border(lipgloss.NormalBorder()).
		Headers("scenario", "POP3 login", "2nd IMAP", "webmail", "handset", "BYE reason", "back in", "reconn", "mail delay", "lost/dup", "ok").
		StyleFunc(func(row, col int) lipgloss.Style {
			if row == table.HeaderRow {
				return head.Padding(0, 1)
			}
			return lipgloss.NewStyle().Padding(0, 1)
		})
	for _, r := range rows {
		ok := "yes"
		if !r.OK() {
			ok = bad.Render("NO")
		}
		if r.Err != "" {
			t.Row(r.Scenario, "error: "+clip(r.Err, 40), "", "", "", "", "", "", "", "", ok)
			continue
		}
		t.Row(r.Scenario, clip(r.POP3, 34), clip(r.IMAP, 26), clip(r.Webmail, 26), r.HandsetMode, clip(orDash(r.Bye), 34),
			dur(r.BackIn), fmt.Sprint(r.Reconnects), dur(r.MailDelay), fmt.Sprintf("%d/%d", r.Lost, r.Duplicated), ok)
	}
	var b strings.Builder
	b.WriteString(t.Render())
	b.WriteByte('\n')
	for _, r := range rows {
		for _, p := range r.Problems {
			fmt.Fprintf(&b, "%s: %s\n", termtext.Line(r.Scenario), termtext.Line(p))
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
