package browserpush

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbsim/bbsim/handset"
)

// startReceiver serves a receiver for a fresh in-memory handset on a loopback port.
func startReceiver(t *testing.T, opts Options) (*Receiver, *handset.Handset, string) {
	t.Helper()
	return startReceiverWith(t, opts, nil)
}

// startReceiverWith is startReceiver with a chance to adjust the receiver before it serves.
func startReceiverWith(t *testing.T, opts Options, adjust func(*Receiver)) (*Receiver, *handset.Handset, string) {
	t.Helper()
	if opts.Handset == nil {
		h, err := handset.New(handset.Options{})
		if err != nil {
			t.Fatal(err)
		}
		opts.Handset = h
	}
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if adjust != nil {
		adjust(r)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- r.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			var buf bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&buf, 1)
			t.Errorf("Shutdown: %v\n%s", err, buf.String())
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve = %v, want ErrServerClosed", err)
		}
	})
	return r, opts.Handset, "http://" + ln.Addr().String() + "/"
}

// curlPush posts body with headers to url with the curl binary and returns the HTTP code
// and the X-RIM-Push-Status header.
func curlPush(t *testing.T, url string, headers []string, body []byte) (int, string) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed for this test (apt-get install curl)")
	}
	dir := t.TempDir()
	bodyFile := filepath.Join(dir, "body")
	hdrFile := filepath.Join(dir, "headers")
	if err := os.WriteFile(bodyFile, body, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-sS", "-X", "POST", "-o", os.DevNull, "-D", hdrFile, "-w", "%{http_code}",
		"--data-binary", "@" + bodyFile}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	args = append(args, url)
	out, err := exec.CommandContext(t.Context(), "curl", args...).Output()
	if err != nil {
		t.Fatalf("curl %v: %v", args, err)
	}
	code, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("curl code %q: %v", out, err)
	}
	raw, err := os.ReadFile(hdrFile)
	if err != nil {
		t.Fatal(err)
	}
	status := ""
	for _, l := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "X-RIM-Push-Status") {
			status = strings.TrimSpace(v)
		}
	}
	return code, status
}

// post sends a push with net/http.
func post(t *testing.T, c *http.Client, url string, hdr map[string]string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer drain(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-RIM-Push-Status")
}

func TestCurlPushTypes(t *testing.T) {
	t.Parallel()
	_, h, url := startReceiver(t, Options{})
	page := "http://news.example/today"
	steps := []struct {
		name    string
		headers []string
		body    string
		check   func(t *testing.T)
	}{
		{"channel create", []string{"X-RIM-Push-Type: Browser-Channel", "X-RIM-Push-Title: News",
			"X-RIM-Push-Channel-ID: " + page, "Content-Location: " + page, "Content-Type: text/html",
			"X-Rim-Push-Delete-Url: http://news.example/bye"},
			"<h1>Today</h1><p>first</p>", func(t *testing.T) {
				chs := h.Channels()
				if len(chs) != 1 || chs[0].Title != "News" || chs[0].Read || chs[0].URL != page || chs[0].DeleteURL != "http://news.example/bye" {
					t.Fatalf("Channels() = %+v, want one unread News", chs)
				}
				e, ok := h.CachedPage(page)
				if !ok || !strings.Contains(e.Text, "first") {
					t.Fatalf("CachedPage(%q) = %+v, %v", page, e, ok)
				}
			}},
		{"channel replace", []string{"x-rim-push-type: browser-channel", "x-rim-push-title: News 2",
			"x-rim-push-channel-id: " + page, "Content-Type: text/html"},
			"<p>second</p>", func(t *testing.T) {
				chs := h.Channels()
				if len(chs) != 1 || chs[0].Title != "News 2" || chs[0].Read {
					t.Fatalf("Channels() = %+v, want one unread News 2", chs)
				}
				ch, pg, err := h.OpenChannel(chs[0].ID)
				if err != nil || !ch.Read || !strings.Contains(pg.Text, "second") {
					t.Fatalf("OpenChannel = %+v, %+v, %v; want read with second page", ch, pg, err)
				}
			}},
		{"message", []string{"X-RIM-Push-Type: Browser-Message", "X-RIM-Push-Title: Hello",
			"Content-Location: http://msg.example/1", "Content-Type: text/plain"},
			"plain words", func(t *testing.T) {
				ms := h.Messages()
				if len(ms) != 1 || ms[0].Kind != handset.KindBrowser || ms[0].Subject != "Hello" || ms[0].Text != "plain words" {
					t.Fatalf("Messages() = %+v", ms)
				}
			}},
		{"message again adds an entry", []string{"X-RIM-Push-Type: Browser-Message",
			"Content-Location: http://msg.example/2", "Content-Type: image/png"},
			"\x89PNG....", func(t *testing.T) {
				ms := h.Messages()
				if len(ms) != 2 {
					t.Fatalf("Messages() = %d entries, want 2", len(ms))
				}
				var m handset.Message
				for _, x := range ms {
					if x.URL == "http://msg.example/2" {
						m = x
					}
				}
				if m.Subject != "http://msg.example/2" || m.Text != "image/png, 8 bytes" {
					t.Fatalf("message = %+v, want subject = URL and text \"image/png, 8 bytes\"", m)
				}
			}},
		{"content", []string{"X-RIM-Push-Type: Browser-Content", "Content-Location: http://news.example/cached",
			"Content-Type: text/html; charset=iso-8859-1", "Expires: not a date"},
			"<p>caf\xe9</p>", func(t *testing.T) {
				if n := len(h.Messages()); n != 2 {
					t.Fatalf("content push added a message: %d", n)
				}
				if n := len(h.Channels()); n != 1 {
					t.Fatalf("content push changed channels: %d", n)
				}
				// An unparsable Expires means already expired.
				if _, ok := h.CachedPage("http://news.example/cached"); ok {
					t.Fatalf("cached page with a bad Expires is still fresh")
				}
			}},
		{"content with expires", []string{"X-RIM-Push-Type: Browser-Content", "Content-Location: http://news.example/c2",
			"Content-Type: text/html; charset=iso-8859-1", "Expires: " + time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)},
			"<p>caf\xe9</p>", func(t *testing.T) {
				e, ok := h.CachedPage("http://news.example/c2")
				if !ok || strings.TrimSpace(e.Text) != "café" {
					t.Fatalf("CachedPage = %+v, %v; want café", e, ok)
				}
				if d := time.Until(e.ExpiresAt); d > time.Hour || d < 50*time.Minute {
					t.Fatalf("ExpiresAt in %v, want about 1h", d)
				}
			}},
		{"content default lifetime", []string{"X-RIM-Push-Type: Browser-Content", "Content-Location: http://news.example/c3"},
			"hello", func(t *testing.T) {
				e, ok := h.CachedPage("http://news.example/c3")
				if !ok || e.Text != "hello" {
					t.Fatalf("CachedPage = %+v, %v", e, ok)
				}
				if d := e.ExpiresAt.Sub(e.StoredAt); d != handset.DefaultCacheLifetime {
					t.Fatalf("lifetime %v, want %v", d, handset.DefaultCacheLifetime)
				}
			}},
		{"channel delete", []string{"X-RIM-Push-Type: Browser-Channel-Delete", "X-RIM-Push-Channel-ID: " + page},
			"", func(t *testing.T) {
				if chs := h.Channels(); len(chs) != 0 {
					t.Fatalf("Channels() = %+v after delete", chs)
				}
			}},
		{"delete of an unknown channel", []string{"X-RIM-Push-Type: Browser-Channel-Delete", "X-RIM-Push-Channel-ID: nope"},
			"", func(t *testing.T) {}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			code, status := curlPush(t, url, s.headers, []byte(s.body))
			if code != 200 || status != "" {
				t.Fatalf("push = %d %q, want 200", code, status)
			}
			s.check(t)
		})
	}
}

func TestRejectedPushes(t *testing.T) {
	t.Parallel()
	r, h, url := startReceiver(t, Options{MaxBody: 1000})
	if _, err := h.DeclareApp("app1", 100, ""); err != nil {
		t.Fatal(err)
	}
	_ = r
	multiBad, ctBad := multipartBody(t, []partSpec{
		{hdr: map[string]string{"X-RIM-Push-Type": "Browser-Content", "Content-Location": "http://x/ok"}, body: "ok"},
		{hdr: map[string]string{"X-RIM-Push-Type": "Browser-Bogus"}, body: "bad"},
	})
	tests := []struct {
		name       string
		hdr        map[string]string
		body       []byte
		code       int
		pushStatus string
	}{
		{"no type", map[string]string{"Content-Location": "http://x/"}, []byte("x"), 400, "400"},
		{"unknown type", map[string]string{"X-RIM-Push-Type": "Browser-Thing"}, []byte("x"), 400, "400"},
		{"channel without id", map[string]string{"X-RIM-Push-Type": "Browser-Channel"}, []byte("x"), 400, "400"},
		{"content without location", map[string]string{"X-RIM-Push-Type": "Browser-Content"}, []byte("x"), 400, "400"},
		{"no app on port", map[string]string{"X-RIM-Push-Dest-Port": "101"}, []byte("x"), 404, "4502"},
		{"bad port", map[string]string{"X-RIM-Push-Dest-Port": "seven"}, []byte("x"), 400, "400"},
		{"too big", map[string]string{"X-RIM-Push-Type": "Browser-Content", "Content-Location": "http://x/big"},
			bytes.Repeat([]byte("a"), 1001), 503, "237"},
		{"announced too big", map[string]string{"X-RIM-Push-Type": "Browser-Content", "Content-Location": "http://x/big",
			"X-Bbsim-Push-Length": "5000", "X-Bbsim-Packet": "0/2", "X-RIM-Push-ID": "big"}, []byte("a"), 503, "237"},
		{"length mismatch", map[string]string{"X-RIM-Push-Type": "Browser-Content", "Content-Location": "http://x/l",
			"X-Bbsim-Push-Length": "5", "X-Bbsim-Packet": "0/1"}, []byte("abc"), 400, "400"},
		{"bad packet header", map[string]string{"X-Bbsim-Packet": "3/2"}, []byte("x"), 400, "400"},
		{"packets without push id", map[string]string{"X-Bbsim-Packet": "0/2"}, []byte("x"), 400, "400"},
		{"multipart with a bad part", map[string]string{"Content-Type": ctBad}, multiBad, 400, "400"},
		{"multipart without boundary", map[string]string{"Content-Type": "multipart/mixed"}, []byte("x"), 400, "400"},
		{"app push", map[string]string{"X-RIM-Push-Dest-Port": "100", "Push-Message-ID": "m1"}, []byte("data"), 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, status := post(t, nil, url, tc.hdr, tc.body)
			if code != tc.code || status != tc.pushStatus {
				t.Fatalf("push = %d %q, want %d %q", code, status, tc.code, tc.pushStatus)
			}
		})
	}
	// Nothing of a rejected push was stored.
	if c := h.Cache(); len(c) != 0 {
		t.Errorf("Cache() = %+v after rejected pushes, want empty", c)
	}
	if chs, ms := h.Channels(), h.Messages(); len(chs)+len(ms) != 0 {
		t.Errorf("channels %+v, messages %+v after rejected pushes", chs, ms)
	}
	a, err := h.App("app1")
	if err != nil || len(a.Pushes) != 1 || a.Pushes[0].Body != "data" || a.Pushes[0].MessageID != "m1" {
		t.Errorf("App = %+v, %v; want one push", a, err)
	}

	t.Run("GET", func(t *testing.T) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		drain(resp.Body)
		if resp.StatusCode != 405 {
			t.Fatalf("GET = %d, want 405", resp.StatusCode)
		}
	})
	t.Run("out of coverage", func(t *testing.T) {
		h.SetCoverage(false)
		defer h.SetCoverage(true)
		code, status := post(t, nil, url, map[string]string{"X-RIM-Push-Type": "Browser-Content", "Content-Location": "http://x/"}, []byte("x"))
		if code != 503 || status != "" {
			t.Fatalf("push out of coverage = %d %q, want 503 without status", code, status)
		}
	})
}

type partSpec struct {
	hdr  map[string]string
	body string
}

func multipartBody(t testing.TB, parts []partSpec) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		for k, v := range p.hdr {
			h.Set(k, v)
		}
		w, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(w, p.body)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), "multipart/mixed; boundary=" + mw.Boundary()
}

func TestMultipart(t *testing.T) {
	t.Parallel()
	_, h, url := startReceiver(t, Options{})
	body, ct := multipartBody(t, []partSpec{
		{hdr: map[string]string{"X-RIM-Push-Type": "Browser-Content", "Content-Location": "http://site/page",
			"Content-Type": "text/html"}, body: "<p>the page</p>"},
		{hdr: map[string]string{"X-RIM-Push-Type": "Browser-Channel", "X-RIM-Push-Channel-ID": "http://site/page",
			"Content-Location": "http://site/page", "Content-Type": "text/html"}, body: "<p>channel page</p>"},
	})
	code, status := curlPush(t, url, []string{"Content-Type: " + ct, "X-RIM-Push-Title: Site"}, body)
	if code != 200 {
		t.Fatalf("multipart push = %d %q", code, status)
	}
	chs := h.Channels()
	if len(chs) != 1 || chs[0].Title != "Site" || chs[0].ChannelID != "http://site/page" {
		t.Fatalf("Channels() = %+v, want Site (title inherited from the request)", chs)
	}
	e, ok := h.CachedPage("http://site/page")
	if !ok || strings.TrimSpace(e.Text) != "channel page" {
		t.Fatalf("CachedPage = %+v, %v; want the later part's page", e, ok)
	}
}

// icons returns a PNG and a GIF made with the standard encoders.
func icons(t testing.TB) (pngBytes, gifBytes []byte) {
	t.Helper()
	img := image.NewPaletted(image.Rect(0, 0, 16, 16), color.Palette{color.Black, color.White})
	for i := range 16 {
		img.SetColorIndex(i, i, 1)
	}
	var p, g bytes.Buffer
	if err := png.Encode(&p, img); err != nil {
		t.Fatal(err)
	}
	if err := gif.Encode(&g, img, nil); err != nil {
		t.Fatal(err)
	}
	return p.Bytes(), g.Bytes()
}

func TestChannelIcons(t *testing.T) {
	t.Parallel()
	pngB, gifB := icons(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/unread.png", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(pngB) })
	mux.HandleFunc("/read.gif", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(gifB) })
	mux.HandleFunc("/broken.png", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(pngB[:len(pngB)/2]) })
	mux.HandleFunc("/text.png", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "not an image") })
	var jpg bytes.Buffer
	if err := jpeg.Encode(&jpg, image.NewRGBA(image.Rect(0, 0, 16, 16)), nil); err != nil {
		t.Fatal(err)
	}
	jpgB := jpg.Bytes()
	mux.HandleFunc("/icon.jpg", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(jpgB) })
	huge := image.NewGray(image.Rect(0, 0, 4000, 1))
	var hugeBuf bytes.Buffer
	if err := png.Encode(&hugeBuf, huge); err != nil {
		t.Fatal(err)
	}
	mux.HandleFunc("/huge.png", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(hugeBuf.Bytes()) })
	icon := httptest.NewServer(mux)
	defer icon.Close()
	_, h, url := startReceiver(t, Options{})

	tests := []struct {
		name                 string
		unread, read         string
		wantUnread, wantRead []byte
		loaded               bool
	}{
		{"png and gif", "/unread.png", "/read.gif", pngB, gifB, true},
		{"truncated png", "/broken.png", "/read.gif", nil, gifB, false},
		{"not an image", "/unread.png", "/text.png", pngB, nil, false},
		{"missing", "/missing.png", "/missing.gif", nil, nil, false},
		{"not http", "file:///etc/passwd", "/read.gif", nil, gifB, false},
		{"jpeg", "/icon.jpg", "/read.gif", jpgB, gifB, true},
		{"too wide", "/huge.png", "/read.gif", nil, gifB, false},
	}
	abs := func(p string) string {
		if strings.HasPrefix(p, "/") {
			return icon.URL + p
		}
		return p
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			chID := fmt.Sprintf("http://site/%d", i)
			code, status := curlPush(t, url, []string{"X-RIM-Push-Type: Browser-Channel", "X-RIM-Push-Channel-ID: " + chID,
				"X-RIM-Push-Unread-Icon-URL: " + abs(tc.unread), "X-RIM-Push-Read-Icon-URL: " + abs(tc.read)}, []byte("x"))
			if code != 200 {
				t.Fatalf("push = %d %q", code, status)
			}
			ch, err := h.Channel(chID)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ch.UnreadIcon, tc.wantUnread) || !bytes.Equal(ch.ReadIcon, tc.wantRead) {
				t.Errorf("icons = %d, %d bytes; want %d, %d", len(ch.UnreadIcon), len(ch.ReadIcon), len(tc.wantUnread), len(tc.wantRead))
			}
			if ch.UnreadIconLoaded != (tc.wantUnread != nil) || ch.ReadIconLoaded != (tc.wantRead != nil) || ch.IconsLoaded != tc.loaded {
				t.Errorf("loaded = %v, %v, %v; want %v", ch.UnreadIconLoaded, ch.ReadIconLoaded, ch.IconsLoaded, tc.loaded)
			}
		})
	}
}

func TestSlowIcon(t *testing.T) {
	t.Parallel()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		<-req.Context().Done() // never answers
	}))
	defer slow.Close()
	_, h, url := startReceiverWith(t, Options{}, func(r *Receiver) { r.iconTimeout = 200 * time.Millisecond })
	start := time.Now()
	code, _ := post(t, nil, url, map[string]string{"X-RIM-Push-Type": "Browser-Channel", "X-RIM-Push-Channel-ID": "slow",
		"X-RIM-Push-Unread-Icon-URL": slow.URL + "/u.png", "X-RIM-Push-Read-Icon-URL": slow.URL + "/r.png"}, []byte("x"))
	if code != 200 {
		t.Fatalf("push = %d", code)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("push with hanging icons took %v", d)
	}
	ch, err := h.Channel("slow")
	if err != nil || ch.UnreadIconLoaded || ch.ReadIconLoaded {
		t.Fatalf("Channel = %+v, %v; want stored with default icons", ch, err)
	}
}

func TestHighPriorityAlert(t *testing.T) {
	t.Parallel()
	_, h, url := startReceiver(t, Options{})
	for _, prio := range []string{"low", "HIGH"} {
		code, _ := post(t, nil, url, map[string]string{"X-RIM-Push-Type": "Browser-Channel",
			"X-RIM-Push-Channel-ID": "c-" + prio, "X-RIM-Push-Title": prio, "X-RIM-Push-Priority": prio}, []byte("x"))
		if code != 200 {
			t.Fatalf("push = %d", code)
		}
	}
	var alerts []string
	for _, e := range h.Events(0) {
		if e.Kind == handset.EventPushAlert {
			alerts = append(alerts, e.Fields["title"])
		}
	}
	if len(alerts) != 1 || alerts[0] != "HIGH" {
		t.Fatalf("alerts = %q, want [HIGH]", alerts)
	}
}

// runAgent runs r.Run until the test ends and checks that it returns.
func runAgent(t *testing.T, r *Receiver) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestDeleteURLFetched(t *testing.T) {
	t.Parallel()
	fetched := make(chan string, 4)
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		fetched <- req.Method + " " + req.URL.Path
	}))
	defer site.Close()
	r, h, url := startReceiver(t, Options{})
	runAgent(t, r)
	for _, id := range []string{"by-user", "by-push"} {
		code, _ := curlPush(t, url, []string{"X-RIM-Push-Type: Browser-Channel", "X-RIM-Push-Channel-ID: " + id,
			"X-Rim-Push-Delete-Url: " + site.URL + "/deleted/" + id}, []byte("x"))
		if code != 200 {
			t.Fatalf("push = %d", code)
		}
	}
	code, _ := curlPush(t, url, []string{"X-RIM-Push-Type: Browser-Channel-Delete", "X-RIM-Push-Channel-ID: by-push"}, nil)
	if code != 200 {
		t.Fatalf("delete push = %d", code)
	}
	// Deleted on the handset while out of coverage: fetched on return.
	h.SetCoverage(false)
	if _, err := h.DeleteChannel("by-user", true); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-fetched:
		t.Fatalf("fetched %q while out of coverage", got)
	case <-time.After(200 * time.Millisecond):
	}
	h.SetCoverage(true)
	select {
	case got := <-fetched:
		if got != "GET /deleted/by-user" {
			t.Fatalf("fetched %q, want GET /deleted/by-user", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("delete URL not fetched")
	}
	select {
	case got := <-fetched:
		t.Fatalf("also fetched %q (a channel deleted by push)", got)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestDeleteURLBySoftware: X-Rim-Push-Delete-Url arrived with device software 4.2; an older
// browser ignores it when the user deletes the channel.
func TestDeleteURLBySoftware(t *testing.T) {
	t.Parallel()
	fetched := make(chan string, 4)
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		fetched <- req.URL.Path
	}))
	defer site.Close()
	h, err := handset.New(handset.Options{Software: "4.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	r, _, url := startReceiver(t, Options{Handset: h})
	runAgent(t, r)
	for _, id := range []string{"old", "new"} {
		code, _ := curlPush(t, url, []string{"X-RIM-Push-Type: Browser-Channel", "X-RIM-Push-Channel-ID: " + id,
			"X-Rim-Push-Delete-Url: " + site.URL + "/deleted/" + id}, []byte("x"))
		if code != 200 {
			t.Fatalf("push = %d", code)
		}
	}
	if _, err := h.DeleteChannel("old", true); err != nil {
		t.Fatal(err)
	}
	ev := h.Events(0)
	last := ev[len(ev)-1]
	if last.Kind != handset.EventChannelDeleted || last.Fields["delete_url"] != "" ||
		last.Fields["delete_url_ignored"] != site.URL+"/deleted/old" || last.Fields["software"] != "4.1.0" {
		t.Fatalf("delete on 4.1.0: event %+v, want the delete URL ignored", last)
	}
	if _, err := h.SetSoftware("4.2.0"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.DeleteChannel("new", true); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-fetched:
		if got != "/deleted/new" {
			t.Fatalf("fetched %s, want only /deleted/new (4.1.0 ignores the header)", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("4.2.0 did not fetch the delete URL")
	}
}
