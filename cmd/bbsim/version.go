package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
)

// buildCommit is the commit the Makefile names with -ldflags "-X main.buildCommit=…", for
// builds where Go records no VCS information.
var buildCommit string

// version describes the build from the module and VCS information Go records in the binary.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "bbsim (no build information)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, at, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev == "" {
		rev = buildCommit
	}
	out := "bbsim " + v
	if rev != "" {
		out += fmt.Sprintf(" (commit %.12s%s", rev, dirty)
		if at != "" {
			out += ", " + at
		}
		out += ")"
	}
	return out + ", " + bi.GoVersion
}

func cmdVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", stderr)
	if err := parseTool(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, version())
	return nil
}
