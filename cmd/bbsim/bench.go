package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/bbsim/bbsim/bench"
	"github.com/bbsim/bbsim/config"
	"github.com/bbsim/bbsim/internal/radio"
)

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", stderr)
	var o bench.Options
	var only string
	var jsonOut bool
	fs.BoolVar(&o.Quick, "quick", false, "smaller runs: a first look, not figures to quote")
	fs.StringVar(&only, "only", "", "comma-separated measurements to run ("+strings.Join(bench.Names(), ", ")+")")
	fs.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	rc := config.Handset{Radio: radio.Off}
	rc.RegisterRadioProfile(fs)
	if err := parseTool(fs, args); err != nil {
		return err
	}
	var err error
	if o.Radio, err = rc.RadioConditions(); err != nil {
		fmt.Fprintf(stderr, "bbsim bench: %v\n", err)
		return errUsage
	}
	if only != "" {
		o.Only = strings.Split(only, ",")
		if err := bench.CheckOnly(o.Only); err != nil {
			fmt.Fprintf(stderr, "bbsim bench: %v\n", err)
			return errUsage
		}
	}
	dir, err := os.MkdirTemp("", "bbsim-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	o.Dir = dir
	o.Progress = stderr
	r := bench.Run(ctx, o)
	if jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprint(stdout, r.Table())
	return nil
}
