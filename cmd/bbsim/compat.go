package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/bbsim/bbsim/compat"
	"github.com/bbsim/bbsim/pushinit"
)

func cmdCompat(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("compat", stderr)
	var p pushinit.Push
	var headers strList
	var request, file, proto, versions string
	var opts compat.Options
	var jsonOut, debug bool
	fs.StringVar(&request, "request", "", "the push as its initiator sends it: a `FILE` holding the HTTP request (POST /push?… or POST /pap, headers, an empty line, the body; - for stdin)")
	fs.StringVar(&proto, "protocol", "rim", "without --request: rim (POST /push) or pap (POST /pap)")
	fs.StringVar(&p.Type, "type", "channel", "without --request: browser push type: channel, message, content or delete (empty: application push)")
	fs.IntVar(&p.Port, "port", 7874, "without --request: device port")
	fs.StringVar(&p.Title, "title", "Compatibility", "without --request: X-RIM-Push-Title")
	fs.StringVar(&p.ContentLocation, "content-location", "http://push.bbsim.test/compat", "without --request: Content-Location, the page's URL (and the channel ID)")
	fs.StringVar(&p.ContentType, "content-type", "", "without --request: Content-Type (default text/html for browser pushes)")
	fs.StringVar(&p.Reliability, "reliability", "", "without --request: transport, application or application-preferred (PAP: a delivery-method)")
	fs.StringVar(&file, "file", "", "without --request: the content from this `FILE` (- for stdin; default a small HTML page)")
	fs.Var(&headers, "header", "without --request: a header of the push, `\"Name: value\"` (X-RIM-Transcode-Content: none, say); repeatable")
	fs.StringVar(&versions, "versions", strings.Join(compat.DefaultVersions, ","), "comma-separated device software versions, one handset each")
	fs.DurationVar(&opts.Timeout, "timeout", 15*time.Second, "bound of each wait (attaching, the result notification)")
	fs.BoolVar(&jsonOut, "json", false, "print the rows as JSON")
	fs.BoolVar(&debug, "debug", false, "log the gateway and the handsets to stderr")
	if err := parseTool(fs, args); err != nil {
		return err
	}
	if debug {
		opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, v := range strings.Split(versions, ",") {
		if v = strings.TrimSpace(v); v != "" {
			opts.Versions = append(opts.Versions, v)
		}
	}
	var err error
	if request != "" {
		opts.Request, err = readRequest(request)
	} else {
		opts.Request, err = flagRequest(ctx, p, proto, file, headers)
	}
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bbsim-compat-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	opts.Dir = dir
	rows, err := compat.Run(ctx, opts)
	if err != nil {
		return err
	}
	return printReport(stdout, jsonOut, rows, compat.Table, "the push failed on device software ",
		func(r compat.Row) (string, bool) { return r.Version, r.OK() })
}

func readRequest(name string) (*compat.Request, error) {
	b, err := readFileArg(name)
	if err != nil {
		return nil, fmt.Errorf("--request: %w", err)
	}
	r, err := compat.ParseRequest(b)
	if err != nil {
		return nil, fmt.Errorf("--request %s: %w", name, err)
	}
	return r, nil
}

// defaultPage is what the report pushes when given no content: HTML, which the gateway
// transcodes unless told otherwise.
const defaultPage = "<html><head><title>Compatibility</title></head><body><h1>Compatibility</h1><p>A browser push from bbsim compat.</p></body></html>\n"

// flagRequest builds the push from the flags, as bbsim push would send it.
func flagRequest(ctx context.Context, p pushinit.Push, proto, file string, headers []string) (*compat.Request, error) {
	p.Protocol = pushinit.Protocol(strings.ToLower(proto))
	if p.Protocol != pushinit.RIM && p.Protocol != pushinit.PAP {
		return nil, fmt.Errorf("--protocol %q: want rim or pap", proto)
	}
	p.Gateway, p.To = "http://gateway.invalid", []string{"2100000A"} // each handset's in the report
	switch {
	case file != "":
		b, err := readFileArg(file)
		if err != nil {
			return nil, fmt.Errorf("--file: %w", err)
		}
		p.Body = b
	default:
		p.Body = []byte(defaultPage)
	}
	var err error
	if p.Header, err = parseHeaders(headers); err != nil {
		return nil, err
	}
	req, err := p.Request(ctx)
	if err != nil {
		return nil, err
	}
	return compat.FromHTTP(req)
}
