package config

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// groupTitles name the flag groups in --help, in the order they are listed.
var groupTitles = []struct {
	g     Group
	title string
}{
	{GroupData, "State and logs"},
	{GroupMail, "Mail server"},
	{GroupPush, "Push server"},
	{GroupDNS, "DNS zone"},
	{GroupHandset, "Handset"},
	{GroupUI, "Display"},
}

// PrintUsage writes fs's flags grouped by component (mail server, push server, handset…)
// instead of one alphabetical list, each with its effective default.
func PrintUsage(w io.Writer, fs *flag.FlagSet, groups Group) {
	seen := map[string]bool{}
	for _, gt := range groupTitles {
		if groups&gt.g == 0 {
			continue
		}
		probe := flag.NewFlagSet("", flag.ContinueOnError)
		c := Default()
		c.Register(probe, gt.g)
		var lines []string
		probe.VisitAll(func(p *flag.Flag) {
			f := fs.Lookup(p.Name)
			if f == nil || seen[f.Name] {
				return
			}
			seen[f.Name] = true
			lines = append(lines, flagUsage(f))
		})
		if len(lines) > 0 {
			fmt.Fprintf(w, "\n%s:\n%s", gt.title, strings.Join(lines, ""))
		}
	}
	var rest []string
	fs.VisitAll(func(f *flag.Flag) {
		if !seen[f.Name] {
			rest = append(rest, flagUsage(f))
		}
	})
	if len(rest) > 0 {
		fmt.Fprintf(w, "\nOther:\n%s", strings.Join(rest, ""))
	}
}

// flagUsage formats one flag as flag.PrintDefaults does.
func flagUsage(f *flag.Flag) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  --%s", f.Name)
	name, usage := flag.UnquoteUsage(f)
	if name != "" {
		b.WriteString(" " + name)
	}
	b.WriteString("\n    \t")
	b.WriteString(strings.ReplaceAll(usage, "\n", "\n    \t"))
	if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
		if name == "string" {
			fmt.Fprintf(&b, " (default %q)", f.DefValue)
		} else {
			fmt.Fprintf(&b, " (default %s)", f.DefValue)
		}
	}
	b.WriteString("\n")
	return b.String()
}
