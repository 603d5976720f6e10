package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// timedOut is bbsim wait's failure when nothing matched in time: exit status 1.
type timedOut struct{ what string }

func (e timedOut) Error() string { return e.what }
func (e timedOut) ExitCode() int { return 1 }

// cmdWait blocks until the handset shows what is asked for, through the control API's
// long-poll lists, prints it as one JSON line and exits 0; it exits 1 at --timeout.
func cmdWait(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("wait", stderr)
	var api, message, mail, channel, event, app, match string
	var after uint64
	var timeout time.Duration
	fs.StringVar(&api, "api", "127.0.0.1:7880", "the handset's control API address (bbsim fleet: HOST:PORT/h/PIN)")
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait before giving up with exit status 1")
	fs.StringVar(&message, "message", "", "a message (mail or browser message) whose subject, sender or URL contains `TEXT`")
	fs.StringVar(&mail, "mail", "", "an e-mail whose subject or sender contains `TEXT`")
	fs.StringVar(&channel, "channel", "", "a browser channel whose title, channel id or URL contains `TEXT`")
	fs.StringVar(&event, "event", "", "an event of `KIND` or one of its sub-kinds (push matches push.channel); see --match, --after")
	fs.StringVar(&app, "app", "", "a push application whose id contains `TEXT`")
	fs.StringVar(&match, "match", "", "with --event: the event's text contains `TEXT`")
	fs.Uint64Var(&after, "after", 0, "with --event: only events after sequence number `SEQ` (default: the whole kept history)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: bbsim wait [--api ADDR] [--timeout D] --message TEXT | --mail TEXT | --channel TEXT | --app TEXT | --event KIND [--match TEXT]")
		fmt.Fprintln(fs.Output(), "Waits until the handset shows a match, prints it as JSON and exits 0; exits 1 at --timeout.")
		fs.PrintDefaults()
	}
	if err := parseTool(fs, args); err != nil {
		return err
	}
	q := url.Values{}
	var path, what string
	n := 0
	for _, s := range []struct {
		v, path, what string
		extra         func()
	}{
		{message, "messages", "message", nil},
		{mail, "messages", "mail", func() { q.Set("kind", "email") }},
		{channel, "channels", "channel", nil},
		{app, "apps", "push application", nil},
		{event, "events", "event", func() {
			q.Set("format", "json")
			q.Set("kind", event)
			q.Set("after", fmt.Sprint(after))
			if match != "" {
				q.Set("match", match)
			}
		}},
	} {
		if s.v == "" {
			continue
		}
		n++
		path, what = s.path, fmt.Sprintf("%s matching %q", s.what, s.v)
		if s.path != "events" {
			q.Set("match", s.v)
		}
		if s.extra != nil {
			s.extra()
		}
	}
	if n != 1 {
		fmt.Fprintln(stderr, "bbsim wait: give exactly one of --message, --mail, --channel, --app, --event")
		fs.Usage()
		return errUsage
	}
	if match != "" && event == "" {
		fmt.Fprintln(stderr, "bbsim wait: --match goes with --event")
		return errUsage
	}
	base := strings.TrimRight(api, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u := base + "/api/v1/" + path
	deadline := time.Now().Add(timeout)
	client := &http.Client{}
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return timedOut{fmt.Sprintf("wait: no %s on %s within %v", what, base, timeout)}
		}
		q.Set("wait", min(left, time.Minute).Round(time.Millisecond).String())
		items, err := waitList(ctx, client, u+"?"+q.Encode(), min(left, time.Minute)+10*time.Second)
		if err != nil {
			return fmt.Errorf("wait: %w", err)
		}
		if len(items) > 0 {
			fmt.Fprintf(stdout, "%s\n", items[0])
			return nil
		}
	}
}

// waitList makes one long-poll request and returns the list's items.
func waitList(ctx context.Context, client *http.Client, u string, bound time.Duration) ([]json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(body, &e)
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, e.Error)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(body, &items); err != nil {
		return nil, errors.New("GET " + u + ": not a JSON list (is this a handset's control API?)")
	}
	// One line per item, whatever the server's indentation.
	for i, it := range items {
		var b bytes.Buffer
		if err := json.Compact(&b, it); err == nil {
			items[i] = b.Bytes()
		}
	}
	return items, nil
}
