package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/bbsim/bbsim/config"
	"github.com/bbsim/bbsim/pushinit"
	"github.com/bbsim/bbsim/rim"
)

// strList is a repeatable string flag.
type strList []string

func (l *strList) String() string { return strings.Join(*l, " ") }
func (l *strList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// parseHeaders reads repeated --header "Name: value" flags.
func parseHeaders(lines []string) (http.Header, error) {
	h := http.Header{}
	for _, l := range lines {
		k, v, ok := strings.Cut(l, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--header %q: want \"Name: value\"", l)
		}
		h.Add(textproto.TrimString(k), textproto.TrimString(v))
	}
	return h, nil
}

// readFileArg reads the file a flag names, or stdin for "-".
func readFileArg(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(name)
}

// parseTool parses a tool's flags after applying BBSIM_<FLAG> from the environment to the
// scalar ones (the command line wins).
func parseTool(fs *flag.FlagSet, args []string) error {
	var errs []string
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := f.Value.(*strList); ok {
			return
		}
		if v := os.Getenv(config.EnvName(f.Name)); v != "" {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Sprintf("%s=%q: %v", config.EnvName(f.Name), v, err))
			}
			f.DefValue = f.Value.String()
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("environment: %s", strings.Join(errs, "; "))
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	return nil
}

// undelivered is --wait's failure: recipients whose final state was not delivered.
type undelivered struct{ n int }

func (u undelivered) Error() string { return fmt.Sprintf("%d recipient(s) not delivered", u.n) }
func (u undelivered) ExitCode() int { return 1 }

// failures is an error whose exit status is 1 after its text is printed.
type failures struct{ n, total int }

func (f failures) Error() string {
	return fmt.Sprintf("%d of %d pushes failed", f.n, f.total)
}
func (f failures) ExitCode() int { return 1 }

func cmdPush(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("push", stderr)
	var p pushinit.Push
	var to strList
	var proto, file, pageURL, bulk, notify, progress string
	var concurrency, retries int
	var jsonOut, waitFinal bool
	var notifyWait, waitFor time.Duration
	fs.StringVar(&p.Gateway, "gateway", "http://127.0.0.1:8080", "push server `URL`")
	fs.StringVar(&proto, "protocol", "rim", "rim (POST /push), pap (POST /pap) or bis (POST /mss/PD_pushRequest)")
	fs.Var(&to, "to", "recipient: PIN, e-mail or $group (RIM push), PIN or push_all (BIS); repeatable")
	fs.IntVar(&p.Port, "port", 7874, "device port (7874 is the browser)")
	fs.StringVar(&p.RequestURI, "request-uri", "/", "URI handed to the device")
	fs.StringVar(&p.Type, "type", "", "browser push type: channel, message, content or delete (empty: application push)")
	fs.StringVar(&p.Title, "title", "", rim.HeaderTitle)
	fs.StringVar(&p.ChannelID, "channel-id", "", "X-RIM-Push-Channel-ID (default: --content-location or --url)")
	fs.StringVar(&p.ContentLocation, "content-location", "", "Content-Location: the page's URL")
	fs.StringVar(&p.ReadIcon, "read-icon", "", rim.HeaderReadIconURL)
	fs.StringVar(&p.UnreadIcon, "unread-icon", "", rim.HeaderUnreadIconURL)
	fs.StringVar(&p.Priority, "priority", "", "none, low, medium or high")
	fs.StringVar(&p.Reliability, "reliability", "", "transport, application or application-preferred")
	fs.StringVar(&p.DeleteURL, "delete-url", "", "X-Rim-Push-Delete-Url, fetched when the user deletes the channel")
	var headers strList
	fs.Var(&headers, "header", "another header of the content, `\"Name: value\"` (X-RIM-Transcode-Content: none, say); repeatable")
	fs.StringVar(&p.ContentType, "content-type", "", "Content-Type (default text/html for browser pushes; the page's own with --url)")
	fs.StringVar(&p.ID, "id", "", "push ID (default: a random one)")
	fs.StringVar(&p.Username, "username", "", "push initiator name, or the BIS application ID")
	fs.StringVar(&p.Password, "password", "", "push initiator or BIS application password")
	fs.StringVar(&file, "file", "", "content from this file (- for stdin; default: stdin when it is not a terminal)")
	fs.StringVar(&pageURL, "url", "", "fetch this page and push it with its Content-Type")
	fs.StringVar(&bulk, "bulk", "", "bulk file: one \"host port PIN\" line per recipient, or CSV host,port,pin")
	fs.IntVar(&concurrency, "concurrency", 200, "bulk: requests in flight at most")
	fs.IntVar(&retries, "retries", 5, "how many times a busy answer (HTTP 503, PAP 4001) is retried, waiting as its Retry-After asks or with backoff from 100 ms")
	fs.StringVar(&progress, "progress", "auto", "bulk progress bar: auto (on a terminal), always or never")
	fs.StringVar(&notify, "notify", "", "listen on `ADDR` for result notifications and print them")
	fs.DurationVar(&notifyWait, "notify-wait", 30*time.Second, "with --notify: how long to wait for the notifications")
	fs.BoolVar(&jsonOut, "json", false, "print results as JSON lines")
	fs.BoolVar(&waitFinal, "wait", false, "wait for each recipient's final state (delivered, refused by the device, expired…) and exit 1 with the reason unless every one was delivered")
	fs.DurationVar(&waitFor, "wait-timeout", 2*time.Minute, "with --wait: how long to wait for the final states")
	if err := parseTool(fs, args); err != nil {
		return err
	}
	p.Protocol = pushinit.Protocol(strings.ToLower(proto))
	p.To = to
	var err error
	if p.Header, err = parseHeaders(headers); err != nil {
		fmt.Fprintf(stderr, "bbsim push: %v\n", err)
		return errUsage
	}
	if bulk == "" && len(to) == 0 {
		fmt.Fprintln(stderr, "bbsim push: no recipient: give --to (or --bulk FILE)")
		return errUsage
	}
	if err := checkRecipients(to, p.Protocol); err != nil {
		fmt.Fprintf(stderr, "bbsim push: %v\n", err)
		return errUsage
	}
	if waitFinal && bulk != "" {
		fmt.Fprintln(stderr, "bbsim push: --wait follows single pushes; with --bulk use --notify")
		return errUsage
	}

	body, err := pushContent(ctx, file, pageURL, &p)
	if err != nil {
		return err
	}
	p.Body = body

	var notes chan pushinit.Notification
	if notify != "" {
		ln, err := net.Listen("tcp", notify)
		if err != nil {
			return fmt.Errorf("--notify %s: %w", notify, err)
		}
		notes = make(chan pushinit.Notification, 1024)
		srv := &http.Server{Handler: pushinit.NotifyHandler(func(n pushinit.Notification) { notes <- n }), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		p.NotifyURL = "http://" + ln.Addr().String() + "/"
		fmt.Fprintf(stderr, "listening for result notifications on %s\n", p.NotifyURL)
	}

	out := &resultPrinter{w: stdout, json: jsonOut}
	var results []pushinit.Result
	if retries < 0 {
		fmt.Fprintln(stderr, "bbsim push: --retries must be 0 or more")
		return errUsage
	}
	c := &pushinit.Client{Retries: retries}
	if retries == 0 {
		c.Retries = -1 // none; the Client's zero value means its default
	}
	if bulk != "" {
		f, err := os.Open(bulk)
		if err != nil {
			return fmt.Errorf("--bulk: %w", err)
		}
		targets, err := pushinit.ParseBulk(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("--bulk %s: %w", bulk, err)
		}
		show := progress == "always" || (progress == "auto" && isTerminal(stderr))
		var bar func(pushinit.Progress)
		if show {
			var last time.Time
			bar = func(pr pushinit.Progress) {
				if pr.Done == pr.Total || time.Since(last) > 100*time.Millisecond {
					last = time.Now()
					fmt.Fprintf(stderr, "\r%s", pr.Bar(72))
				}
			}
		}
		results = c.Bulk(ctx, p, targets, concurrency, bar)
		if show {
			fmt.Fprintln(stderr)
		}
		for _, r := range results {
			if !r.OK() || jsonOut {
				out.print(r)
			}
		}
	} else {
		r := c.Send(ctx, p)
		out.print(r)
		results = []pushinit.Result{r}
		if waitFinal && r.OK() {
			// RIM push is answered on acceptance, before delivery: the outcome comes from
			// the gateway's push status.
			if n := waitOutcome(ctx, p.Gateway, p.Username, p.Password, r.ID, waitFor, out); n > 0 {
				return undelivered{n}
			}
		}
	}
	failed := 0
	for _, r := range results {
		if !r.OK() {
			failed++
		}
	}
	if notes != nil && failed < len(results) {
		want := 0
		for _, r := range results {
			if r.OK() {
				want += len(r.To)
			}
		}
		failed += waitNotifications(ctx, notes, want, notifyWait, out)
	}
	if !jsonOut && (len(results) > 1 || bulk != "") {
		fmt.Fprintf(stdout, "%d pushes, %d accepted, %d failed\n", len(results), len(results)-failed, failed)
	}
	if failed > 0 {
		return failures{failed, len(results)}
	}
	return nil
}

// pushContent reads the content to push from --file, --url or stdin.
func pushContent(ctx context.Context, file, pageURL string, p *pushinit.Push) ([]byte, error) {
	switch {
	case file != "" && pageURL != "":
		return nil, errors.New("give --file or --url, not both")
	case pageURL != "":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, pageURL, nil)
		if err != nil {
			return nil, fmt.Errorf("--url: %w", err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("fetch %s: %w", pageURL, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("fetch %s: HTTP %s", pageURL, resp.Status)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		if err != nil {
			return nil, fmt.Errorf("fetch %s: %w", pageURL, err)
		}
		if p.ContentType == "" {
			p.ContentType = resp.Header.Get("Content-Type")
		}
		if p.ContentLocation == "" {
			p.ContentLocation = pageURL
		}
		return b, nil
	case file != "":
		return readFileArg(file)
	case !term.IsTerminal(int(os.Stdin.Fd())):
		return io.ReadAll(os.Stdin)
	}
	return nil, nil
}

type resultPrinter struct {
	mu   sync.Mutex
	w    io.Writer
	json bool
}

func (o *resultPrinter) print(r pushinit.Result) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.json {
		v := struct {
			pushinit.Result
			Error string `json:"error,omitempty"`
		}{Result: r}
		if r.Err != nil {
			v.Error = r.Err.Error()
		}
		b, _ := json.Marshal(v)
		fmt.Fprintf(o.w, "%s\n", b)
		return
	}
	to := strings.Join(r.To, ",")
	if r.Err != nil {
		fmt.Fprintf(o.w, "push %s to %s: FAILED: %v\n", r.ID, to, r.Err)
		return
	}
	detail := fmt.Sprintf("HTTP %d", r.HTTPStatus)
	if r.Code != 0 {
		detail += fmt.Sprintf(", code %d (%s)", r.Code, pushinit.CodeMeaning(r.Code))
	}
	fmt.Fprintf(o.w, "push %s to %s: accepted, %s\n", r.ID, to, detail)
}

func (o *resultPrinter) note(n pushinit.Notification) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.json {
		b, _ := json.Marshal(struct {
			Notification pushinit.Notification `json:"notification"`
		}{n})
		fmt.Fprintf(o.w, "%s\n", b)
		return
	}
	fmt.Fprintf(o.w, "notification: %s\n", n)
}

// waitNotifications prints notifications until want have arrived or the wait ends, and
// returns how many reported a failure.
func waitNotifications(ctx context.Context, notes <-chan pushinit.Notification, want int, wait time.Duration, out *resultPrinter) int {
	t := time.NewTimer(wait)
	defer t.Stop()
	failed := 0
	for got := 0; got < want; got++ {
		select {
		case n := <-notes:
			out.note(n)
			if (n.Status != 0 && n.Status != http.StatusOK) || (n.Code != 0 && n.Code/1000 != 1) {
				failed++
			}
		case <-t.C:
			fmt.Fprintf(out.w, "%d of %d notifications arrived within %s\n", got, want, wait)
			return failed
		case <-ctx.Done():
			return failed
		}
	}
	return failed
}
