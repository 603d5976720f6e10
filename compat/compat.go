// Package compat is the compatibility report: one push sent to handsets of several device
// software versions, each attached to a bundled push gateway, with what each one showed
// (opened, the browser's error, notified and with what status). bbsim compat prints it.
package compat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bbsim/bbsim/fleet"
	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/pushinit"
	"github.com/bbsim/bbsim/pushserver"
	"github.com/bbsim/bbsim/rim"
	"github.com/bbsim/bbsim/rim/pap"
)

// DefaultVersions are the device software versions a report covers unless told otherwise:
// one of each behaviour bbsim knows for browser push (handset.KnownSoftware), from 4.x to
// the default 7.1.
var DefaultVersions = []string{"4.2.0", "5.0.0", "6.0.0.141", "6.0.0.203", handset.DefaultSoftware}

// Options configure Run.
type Options struct {
	// Request is the push. Required.
	Request *Request
	// Versions are the device software versions, one handset each. Default DefaultVersions.
	Versions []string
	// Dir is a scratch directory for the gateway's store. Required.
	Dir string
	// Timeout bounds each wait (handsets attaching, the result notification). Default 15 s.
	Timeout time.Duration
	// Logger. Default: discard.
	Logger *slog.Logger
}

// Row is what one handset showed.
type Row struct {
	Version string `json:"version"`
	Browser string `json:"browser"`
	PIN     string `json:"pin"`
	// Answer is the gateway's answer to the push: the HTTP status, and the PAP code.
	Answer string `json:"answer"`
	// Accepted is whether the gateway took the push.
	Accepted bool `json:"accepted"`
	// Shown is where the push went on the handset: channel, message, cache, app (with its
	// port), rejected, or "" when nothing arrived.
	Shown string `json:"shown,omitempty"`
	// Opened is "yes" when the browser displayed the page, "error" when it showed an error
	// instead (ErrorCode, ErrorText), "" when there was nothing to open.
	Opened    string `json:"opened,omitempty"`
	ErrorCode string `json:"error_code,omitempty"`
	ErrorText string `json:"error_text,omitempty"`
	// Notified is the result notification's status (RIM: X-RIM-Push-Status; PAP: the code
	// and message-state), or "" when none came within the timeout.
	Notified string `json:"notified,omitempty"`
	// Problems say why the row failed; none when the push worked on that version.
	Problems []string `json:"problems,omitempty"`
}

// OK reports whether the push worked on that version.
func (r Row) OK() bool { return len(r.Problems) == 0 }

// Run starts a push gateway and one handset per version, sends the push to each handset and
// reports what each showed, in the order of the versions.
func Run(ctx context.Context, opts Options) ([]Row, error) {
	if opts.Request == nil {
		return nil, errors.New("compat: no push")
	}
	if opts.Dir == "" {
		return nil, errors.New("compat: no scratch directory")
	}
	if len(opts.Versions) == 0 {
		opts.Versions = DefaultVersions
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 15 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	var bad []error
	for _, v := range opts.Versions {
		if _, err := handset.ParseSoftware(v); err != nil {
			bad = append(bad, err)
		}
	}
	if err := errors.Join(bad...); err != nil {
		return nil, err
	}

	gw, err := pushserver.Open(ctx, pushserver.Options{DataDir: opts.Dir, FlowControlTimeout: opts.Timeout, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	defer gw.Close()
	gwURL, err := serve(gw.Serve)
	if err != nil {
		return nil, err
	}
	notes := newNotifications()
	ns := &http.Server{Handler: pushinit.NotifyHandler(notes.add), ReadHeaderTimeout: 10 * time.Second}
	defer ns.Close()
	notifyURL, err := serve(ns.Serve)
	if err != nil {
		return nil, err
	}

	fln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	const firstPIN = "2C000000"
	sw := make([]string, len(opts.Versions))
	first, _ := strconv.ParseUint(firstPIN, 16, 32)
	for i, v := range opts.Versions {
		sw[i] = fmt.Sprintf("%08X=%s", first+uint64(i), v)
	}
	fl, err := fleet.New(fleet.Options{Count: len(opts.Versions), FirstPIN: firstPIN, Gateway: gwURL,
		BaseURL: "http://" + fln.Addr().String(), Software: sw, Logger: opts.Logger})
	if err != nil {
		fln.Close()
		return nil, err
	}
	defer fl.Close()
	go fl.Serve(fln)
	fctx, cancel := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { fl.Run(fctx); close(ran) }()
	defer func() { cancel(); <-ran }()

	rows := make([]Row, len(opts.Versions))
	var wg sync.WaitGroup
	for i, m := range fl.Members() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows[i] = runOne(ctx, opts, m.Handset, gwURL, notifyURL, notes)
		}()
	}
	wg.Wait()
	return rows, ctx.Err()
}

// serve serves on a fresh loopback listener and returns its base URL.
func serve(f func(net.Listener) error) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go f(ln)
	return "http://" + ln.Addr().String(), nil
}

// runOne sends the push to one handset and records what it showed.
func runOne(ctx context.Context, opts Options, h *handset.Handset, gateway, notifyURL string, notes *notifications) Row {
	sw := h.Software()
	pin := h.PIN()
	row := Row{Version: sw.String(), Browser: sw.Browser(), PIN: pin}
	problem := func(format string, args ...any) { row.Problems = append(row.Problems, fmt.Sprintf(format, args...)) }

	if err := waitHandset(ctx, h, opts.Timeout, func() bool { return h.LinkStatus().State == handset.LinkAttached }); err != nil {
		problem("the handset did not attach to the gateway: %v", err)
		return row
	}
	seq := h.LastEventSeq()
	id := "compat-" + pin
	req, err := opts.Request.forDevice(ctx, gateway, pin, id, notifyURL)
	if err != nil {
		problem("build the push: %v", err)
		return row
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		problem("push: %v", err)
		return row
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	// The answer as the table shows it: the HTTP status, and the PAP code or the RIM
	// push's reason.
	code, desc := pap.AnswerCode(answer)
	row.Answer = strconv.Itoa(resp.StatusCode)
	switch {
	case code != 0:
		row.Answer += " " + strconv.Itoa(code)
	case resp.StatusCode/100 != 2:
		desc = firstLine(answer)
		row.Answer += " " + desc
	}
	row.Accepted = resp.StatusCode/100 == 2 && (code == 0 || code/1000 == 1)
	if !row.Accepted {
		why := row.Answer
		if code != 0 {
			why += " (" + pushinit.CodeMeaning(code) + "): " + desc
		}
		problem("the gateway refused the push: %s", why)
		return row
	}

	n, ok := notes.wait(ctx, id, opts.Timeout)
	delivered := false
	if !ok {
		problem("no result notification within %v", opts.Timeout)
	} else {
		row.Notified, delivered = notified(n)
		if !delivered {
			why := n.Desc
			if n.Code != 0 {
				why = strings.TrimSuffix(pushinit.CodeMeaning(n.Code)+": "+why, ": ")
			}
			problem("notified %s: %s", row.Notified, why)
		}
	}

	// What the handset made of it: the push's event, then opening it as the user would.
events:
	for _, e := range h.Events(seq) {
		switch e.Kind {
		case handset.EventPushChannel:
			row.Shown = "channel"
			_, _, err = h.OpenChannel(e.Fields["id"])
		case handset.EventPushMessage:
			row.Shown = "message"
			_, err = h.OpenMessage(e.Fields["id"])
		case handset.EventPushContent:
			row.Shown = "cache"
		case handset.EventPushApp:
			row.Shown = "app " + e.Fields["port"]
		case handset.EventPushRejected:
			row.Shown = "rejected"
			problem("the handset rejected the push: %s", e.Text)
		default:
			continue
		}
		break events
	}
	switch {
	case row.Shown == "channel" || row.Shown == "message":
		row.Opened = "yes"
		if err != nil {
			row.Opened, row.ErrorCode, row.ErrorText = "error", handset.BrowserErrorCode(err), errText(err)
			problem("opening the %s showed an error: %s", row.Shown, row.ErrorText)
		}
	case row.Shown == "" && delivered:
		problem("delivered, but the handset shows nothing of it")
	}
	return row
}

// errText is the browser's words, without the "open URL:" the handset wraps them in.
func errText(err error) string {
	s := err.Error()
	if _, after, ok := strings.Cut(s, ": "); ok && strings.HasPrefix(s, "open ") {
		return after
	}
	return s
}

// waitHandset waits until cond holds, checking it again at each handset event.
func waitHandset(ctx context.Context, h *handset.Handset, timeout time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	seq := h.LastEventSeq()
	for !cond() {
		ev, err := h.WaitEvents(ctx, seq)
		if err != nil {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		seq = ev[len(ev)-1].Seq
	}
	return nil
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// notifications is the report's notify URL (pushinit.NotifyHandler): it keeps each result
// notification for the handset's wait, by push id.
type notifications struct {
	mu   sync.Mutex
	got  map[string]pushinit.Notification
	wake chan struct{}
}

func newNotifications() *notifications {
	return &notifications{got: map[string]pushinit.Notification{}, wake: make(chan struct{})}
}

func (n *notifications) add(nt pushinit.Notification) {
	n.mu.Lock()
	n.got[nt.ID] = nt
	close(n.wake)
	n.wake = make(chan struct{})
	n.mu.Unlock()
}

// wait returns the notification for push id, waiting at most timeout.
func (n *notifications) wait(ctx context.Context, id string, timeout time.Duration) (pushinit.Notification, bool) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		n.mu.Lock()
		nt, ok := n.got[id]
		wake := n.wake
		n.mu.Unlock()
		if ok {
			return nt, true
		}
		select {
		case <-wake:
		case <-t.C:
			return pushinit.Notification{}, false
		case <-ctx.Done():
			return pushinit.Notification{}, false
		}
	}
}

// notified is a notification as the table shows it (RIM: X-RIM-Push-Status; PAP: code and
// message-state), and whether it says delivered.
func notified(n pushinit.Notification) (string, bool) {
	if n.Code != 0 {
		return fmt.Sprintf("%d %s", n.Code, n.State), n.Code == rim.CodeOK
	}
	return strconv.Itoa(n.Status), n.Status == http.StatusOK
}
