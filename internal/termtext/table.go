package termtext

import (
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/lipgloss/table"
)

var (
	tableHead = lipgloss.NewStyle().Bold(true).Padding(0, 1, 0, 0)
	tableCell = lipgloss.NewStyle().Padding(0, 1, 0, 0)
	verdictNo = lipgloss.NewStyle().Foreground(lipgloss.Color("9")).Render("NO")
)

// Table starts a report table as bbsim's reports (lockout, compat) print them: rules above
// and below, no side borders, a space after each column, the header in bold. Cells that
// came from outside go through Line first.
func Table(headers ...string) *table.Table {
	return table.New().
		Border(lipgloss.NormalBorder()).BorderColumn(false).BorderLeft(false).BorderRight(false).
		Headers(headers...).
		StyleFunc(func(row, _ int) lipgloss.Style {
			if row == table.HeaderRow {
				return tableHead
			}
			return tableCell
		})
}

// Render renders t, each line without its trailing spaces, ending in a newline.
func Render(t *table.Table) string {
	var b strings.Builder
	for _, l := range strings.Split(t.Render(), "\n") {
		b.WriteString(strings.TrimRight(l, " "))
		b.WriteByte('\n')
	}
	return b.String()
}

// Verdict is a report's last column: "yes", or "NO" in red.
func Verdict(ok bool) string {
	if ok {
		return "yes"
	}
	return verdictNo
}

// OrDash is s, or "-" for an empty cell.
func OrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
