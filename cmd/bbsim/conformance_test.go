package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The push initiators from the field, replayed byte for byte against a running bbsim server
// with a bbsim handset attached: curl for RIM's samples' wire shapes, PHP for the BIS push
// code copied all over the web, Kannel's test_ppg for PAP 1.0 and 2.0. Each case asserts
// the HTTP status, the PAP code, the result notifications and what the handset shows.

const kannelTestPPG = "/usr/lib/kannel/test/test_ppg" // Debian kannel-extras

// conformanceRig is one bbsim server with one bbsim handset attached, and a BIS push
// application registered.
type conformanceRig struct {
	push, api string // host:port of the push server and of the handset's control API
}

func startConformanceRig(t *testing.T) conformanceRig {
	t.Helper()
	dir := t.TempDir()
	ports := freePorts(t, 8)
	args := append(serverArgs(filepath.Join(dir, "server"), ports), "--push-app", "app1:secret:33333")
	startBBSim(t, args...)
	rig := conformanceRig{push: ports[4], api: ports[7]}
	waitAPI(t, "http://"+rig.push+"/api/v1/devices", "[", 30*time.Second)
	startBBSim(t, "handset", "--headless", "--data", filepath.Join(dir, "handset"), "--mail-server", ports[0],
		"--gateway", "http://"+rig.push, "--listen", ports[6], "--api", ports[7], "--app", "app1:33333")
	waitAPI(t, "http://"+rig.api+"/api/v1/device", `"state": "active"`, 30*time.Second)
	return rig
}

// curlPOST posts body byte for byte with curl and returns the HTTP status and the answer.
func curlPOST(t *testing.T, url, ctype string, body []byte, args ...string) (int, string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(f, body, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("curl", append([]string{"-sS", "-w", "\n%{http_code}", "-H", "Content-Type: " + ctype,
		"--data-binary", "@" + f, url}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", url, err, out)
	}
	s := strings.TrimRight(string(out), "\n")
	i := strings.LastIndexByte(s, '\n')
	code, _ := strconv.Atoi(s[i+1:])
	return code, s[:max(i, 0)]
}

// closingListener is the result-notification listener of RIM's samples: it reads each
// request whole and closes the connection without an answer.
type closingListener struct {
	url string
	got chan string // each request, head and body
	mu  sync.Mutex
	n   int
}

func newClosingListener(t *testing.T) *closingListener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	l := &closingListener{url: "http://" + ln.Addr().String() + "/notify", got: make(chan string, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				body, _ := io.ReadAll(req.Body)
				var head bytes.Buffer
				req.Header.Write(&head)
				l.mu.Lock()
				l.n++
				l.mu.Unlock()
				l.got <- head.String() + "\n" + string(body)
			}()
		}
	}()
	return l
}

func (l *closingListener) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func (l *closingListener) wait(t *testing.T) string {
	t.Helper()
	select {
	case s := <-l.got:
		return s
	case <-time.After(30 * time.Second):
		t.Fatal("no result notification within 30 s")
		return ""
	}
}

// metric reads one counter of the push server's /metrics.
func metric(t *testing.T, push, name string) int {
	t.Helper()
	resp, err := http.Get("http://" + push + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + name + ` (\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("metrics without %s:\n%s", name, b)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func bbsimWait(t *testing.T, api string, args ...string) string {
	t.Helper()
	out, errOut, code := runBBSim(t, t.Context(), append([]string{"wait", "--api", api, "--timeout", "30s"}, args...)...)
	if code != 0 {
		t.Fatalf("bbsim wait %v: exit %d\n%s%s", args, code, out, errOut)
	}
	return out
}

func wantIn(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Fatalf("%s lacks %q:\n%s", what, sub, s)
		}
	}
}

func papQuery(kind, id string, addrs ...string) []byte {
	var b strings.Builder
	b.WriteString("<?xml version=\"1.0\"?>\r\n<!DOCTYPE pap PUBLIC \"-//WAPFORUM//DTD PAP 2.0//EN\" \"http://www.wapforum.org/DTD/pap_2.0.dtd\">\r\n<pap>\r\n")
	fmt.Fprintf(&b, "<%s push-id=\"%s\">\r\n", kind, id)
	for _, a := range addrs {
		fmt.Fprintf(&b, "<address address-value=\"%s\"/>\r\n", a)
	}
	fmt.Fprintf(&b, "</%s>\r\n</pap>\r\n", kind)
	return []byte(b.String())
}

// testPPG runs Kannel's test_ppg with a PAP file made from one of testdata/initiators.
func testPPG(t *testing.T, push, papFile, pushID, notify, content string, args ...string) string {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join("testdata", "initiators", papFile))
	if err != nil {
		t.Fatal(err)
	}
	attr := ""
	if notify != "" {
		attr = `ppg-notify-requested-to="` + notify + `"`
	}
	doc := strings.NewReplacer("PUSHID", pushID, "NOTIFY", attr).Replace(string(tmpl))
	f := filepath.Join(t.TempDir(), "pap.xml")
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	all := append(append([]string{"-v", "0"}, args...), "http://"+push+"/pap", filepath.Join("testdata", "initiators", content), f)
	out, err := exec.Command(kannelTestPPG, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("test_ppg %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// ppgAnswer is the status line and body of the answer test_ppg logged (as a hex dump).
func ppgAnswer(log string) (string, string) {
	status := regexp.MustCompile(`Status line: <([^>]*)>`).FindStringSubmatch(log)
	i := strings.Index(log, "Received response:")
	if status == nil || i < 0 {
		return "", ""
	}
	var body bytes.Buffer
	for _, line := range strings.Split(log[i:], "\n") {
		_, hex, ok := strings.Cut(line, "data: ")
		if !ok {
			continue
		}
		for _, f := range strings.Fields(hex) {
			if len(f) != 2 {
				break
			}
			n, err := strconv.ParseUint(f, 16, 8)
			if err != nil {
				break
			}
			body.WriteByte(byte(n))
		}
	}
	return status[1], body.String()
}

func TestPushInitiatorsFromTheField(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"curl", "php", kannelTestPPG} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (make test-deps installs it): %v", tool, err)
		}
	}
	rig := startConformanceRig(t)
	base := "http://" + rig.push

	t.Run("BIS client from the web: unquoted type, \\n\\r tail", func(t *testing.T) {
		out, err := exec.Command("php", filepath.Join("testdata", "initiators", "bis_push.php"),
			base+"/mss/PD_pushRequest", "app1", "secret", "2100000a", "php-bis-1", "stock alert from php").CombinedOutput()
		if err != nil {
			t.Fatalf("php: %v\n%s", err, out)
		}
		wantIn(t, "php's answer", string(out), "HTTP 200", `code="1001"`, "ACCEPTED")
		bbsimWait(t, rig.api, "--app", "app1")
		waitAPI(t, "http://"+rig.api+"/api/v1/device", "stock alert from php", 30*time.Second)
	})

	t.Run("BIS shape on /pap, and no usable boundary", func(t *testing.T) {
		ct := "multipart/related; boundary=mPsbVQo0a68eIL3OAxnm; type=application/xml"
		body := "--mPsbVQo0a68eIL3OAxnm\r\nContent-Type: application/xml; charset=UTF-8\r\n\r\n" +
			`<?xml version="1.0"?>` + "\r\n<pap><push-message push-id=\"pap-bis-shape\"><address address-value=\"2100000A\"/></push-message></pap>\r\n" +
			"--mPsbVQo0a68eIL3OAxnm\r\nContent-Type: text/plain\r\nX-RIM-Push-Type: Browser-Message\r\nX-RIM-Push-Title: BIS shape on PAP\r\n\r\nhello\r\n" +
			"--mPsbVQo0a68eIL3OAxnm--\n\r"
		code, ans := curlPOST(t, base+"/pap", ct, []byte(body))
		if code != 202 {
			t.Fatalf("POST /pap = %d, want 202:\n%s", code, ans)
		}
		wantIn(t, "answer", ans, `code="1001"`)
		bbsimWait(t, rig.api, "--message", "BIS shape on PAP")
		code, ans = curlPOST(t, base+"/pap", "multipart/related; type=application/xml", []byte(body))
		if code != 400 {
			t.Fatalf("POST /pap without boundary = %d, want 400:\n%s", code, ans)
		}
		wantIn(t, "answer", ans, `code="2000"`, "boundary")
	})

	t.Run("RIM PAP sample: notify headers in the content part, no Content-Location", func(t *testing.T) {
		nl := newClosingListener(t)
		before := metric(t, rig.push, "bbsim_push_notifications_total")
		ct := `multipart/related; type="application/xml"; boundary=asdlfkjiurwghasf`
		body := "--asdlfkjiurwghasf\r\nContent-Type: application/xml; charset=UTF-8\r\n\r\n" +
			"<?xml version=\"1.0\"?>\r\n<!DOCTYPE pap PUBLIC \"-//WAPFORUM//DTD PAP 2.0//EN\" \"http://www.wapforum.org/DTD/pap_2.0.dtd\" [<?wap-pap-ver supported-versions=\"2.0,1.*\"?>]>\r\n" +
			"<pap>\r\n<push-message push-id=\"rim-sample-1\" deliver-before-timestamp=\"2099-01-01T00:00:00Z\" source-reference=\"sample\">\r\n" +
			"<address address-value=\"WAPPUSH=alice%40bbsim.test%3A7874/TYPE=USER@rim.net\"/>\r\n" +
			"<quality-of-service delivery-method=\"application-level\"/>\r\n</push-message>\r\n</pap>\r\n" +
			"--asdlfkjiurwghasf\r\nContent-Type: text/html\r\nX-RIM-Push-Type: Browser-Content\r\n" +
			"X-Rim-Push-NotifyURL: " + nl.url + "\r\nX-Rim-Push-Reliability: application-preferred\r\n\r\n" +
			"<html><body>Cached by the PAP sample</body></html>\r\n--asdlfkjiurwghasf--\r\n"
		code, ans := curlPOST(t, base+"/pap", ct, []byte(body))
		if code != 202 {
			t.Fatalf("POST /pap = %d, want 202:\n%s", code, ans)
		}
		wantIn(t, "answer", ans, `code="1001"`)
		bbsimWait(t, rig.api, "--event", "push.content", "--match", "cache://push/rim-sample-1")
		n := nl.wait(t)
		wantIn(t, "notification", n, "resultnotification-message", `message-state="delivered"`, "rim-sample-1")
		// Sent once: the server counts it sent once the initiator closed, with no retry.
		waitFor(t, 30*time.Second, "the notification counted as sent", func() bool {
			return metric(t, rig.push, "bbsim_push_notifications_total") == before+1
		})
		if c := nl.count(); c != 1 {
			t.Fatalf("the sample received %d notifications, want 1", c)
		}

		// Status query and cancel with the address as the initiator wrote it.
		addr := "WAPPUSH=alice%40bbsim.test%3A7874/TYPE=USER@rim.net"
		code, ans = curlPOST(t, base+"/pap", "application/xml", papQuery("statusquery-message", "rim-sample-1", addr, "$IT"))
		if code != 202 {
			t.Fatalf("status query = %d, want 202:\n%s", code, ans)
		}
		wantIn(t, "status query", ans, `message-state="delivered"`, `code="1000"`, `address-value="`+addr+`"`, `code="2002"`, `address-value="$IT"`)
		code, ans = curlPOST(t, base+"/pap", "application/xml", papQuery("cancel-message", "rim-sample-1", addr))
		if code != 202 {
			t.Fatalf("cancel = %d, want 202:\n%s", code, ans)
		}
		wantIn(t, "cancel", ans, `<cancel-result code="2008"`, `address-value="`+addr+`"`)
	})

	t.Run("test_ppg PAP 1.0, base64, LF, preamble and epilogue", func(t *testing.T) {
		log := testPPG(t, rig.push, "pap10.xml", "kannel-10@bbsim.test", "", "hello.wml",
			"-c", "wml", "-S", "X-RIM-Push-Type: Browser-Message", "-e", "base64", "-d", "lf", "-p", "-E")
		status, ans := ppgAnswer(log)
		if !strings.Contains(status, "202") {
			t.Fatalf("test_ppg got %q, want 202:\n%s", status, ans)
		}
		wantIn(t, "answer", ans, "PAP 1.0", `code="1001"`)
		bbsimWait(t, rig.api, "--event", "push.message")
		waitAPI(t, "http://"+rig.api+"/api/v1/messages", "(untitled)", 30*time.Second)
		out, _ := exec.Command("curl", "-s", "-X", "POST", "http://"+rig.api+"/api/v1/messages/"+messageID(t, rig.api, "(untitled)")+"/open").CombinedOutput()
		wantIn(t, "the opened message", string(out), "Hello from Kannel test_ppg.")
	})

	t.Run("RIM multipart sample: a page, its images, and an empty channel part", func(t *testing.T) {
		gif := "GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
		var inner strings.Builder
		inner.WriteString("--innerBoundary\r\nContent-Type: text/html\r\n\r\n<html><body><h1>Waterloo campus</h1>")
		names := []string{"waterloo.gif", "rim.gif", "dc.gif", "parking.gif", "map.gif", "logo.gif"}
		for _, n := range names {
			inner.WriteString(`<img src="` + n + `">`)
		}
		inner.WriteString("</body></html>\r\n")
		for _, n := range names {
			inner.WriteString("--innerBoundary\r\nContent-Type: image/gif\r\ncontent-location: " + n + "\r\n\r\n" + gif + "\r\n")
		}
		inner.WriteString("--innerBoundary--\r\n")
		url := "cache://example.com/MultipartExample"
		body := "--outerBoundary\r\nContent-Type: multipart/mixed; boundary=innerBoundary\r\nContent-Location: " + url +
			"\r\nX-RIM-Push-Type: Browser-Content\r\nX-RIM-Transcode-Content: */*\r\n\r\n" + inner.String() +
			"\r\n--outerBoundary\r\nX-RIM-Push-Type: Browser-Channel\r\nX-RIM-Push-Channel-ID: " + url +
			"\r\nX-RIM-Push-Title: Multipart Example\r\nContent-Location: " + url + "\r\n\r\n\r\n--outerBoundary--\r\n"
		code, ans := curlPOST(t, base+"/push?DESTINATION=2100000A&PORT=7874&REQUESTURI=/", "multipart/mixed; boundary=outerBoundary", []byte(body))
		if code != 200 {
			t.Fatalf("RIM push = %d, want 200:\n%s", code, ans)
		}
		out := bbsimWait(t, rig.api, "--channel", "Multipart Example")
		id := regexp.MustCompile(`"id": ?"([^"]+)"`).FindStringSubmatch(out)
		if id == nil {
			t.Fatalf("bbsim wait printed no channel id: %s", out)
		}
		page, _ := exec.Command("curl", "-s", "-X", "POST", "http://"+rig.api+"/api/v1/channels/"+id[1]+"/open").CombinedOutput()
		wantIn(t, "the opened channel", string(page), "Waterloo campus", "cache://example.com/waterloo.gif (image/gif")
		cache, _ := exec.Command("curl", "-s", "http://"+rig.api+"/api/v1/browser/cache").CombinedOutput()
		wantIn(t, "the browser cache", string(cache), `"parts": [`)
		for _, n := range names {
			wantIn(t, "the browser cache", string(cache), `"url": "cache://example.com/`+n+`"`)
		}
	})

	t.Run("test_ppg SI without a push type: the handset's reason", func(t *testing.T) {
		var mu sync.Mutex
		var notes []string
		got := make(chan struct{}, 4)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			notes = append(notes, string(b))
			mu.Unlock()
			got <- struct{}{}
		})}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		log := testPPG(t, rig.push, "pap20.xml", "kannel-si@bbsim.test", "http://"+ln.Addr().String()+"/n", "si.xml")
		if status, ans := ppgAnswer(log); !strings.Contains(status, "202") || !strings.Contains(ans, `code="1001"`) {
			t.Fatalf("test_ppg got %q:\n%s", status, ans)
		}
		select {
		case <-got:
		case <-time.After(30 * time.Second):
			t.Fatal("no result notification")
		}
		mu.Lock()
		wantIn(t, "notification", notes[0], `message-state="undeliverable"`, "without X-RIM-Push-Type")
		mu.Unlock()
		_, ans := curlPOST(t, base+"/pap", "application/xml", papQuery("statusquery-message", "kannel-si@bbsim.test"))
		wantIn(t, "status query", ans, `message-state="undeliverable"`, "without X-RIM-Push-Type")
		out, _ := exec.Command("curl", "-s", base+"/api/v1/pushes/kannel-si@bbsim.test").CombinedOutput()
		wantIn(t, "/api/v1/pushes", string(out), `"state":"failed"`, `"reason":"push to the browser port 7874 without X-RIM-Push-Type`)
	})
}

// messageID is the id of the handset's message with this subject.
func messageID(t *testing.T, api, subject string) string {
	t.Helper()
	resp, err := http.Get("http://" + api + "/api/v1/messages")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ms []struct{ ID, Subject string }
	if err := json.NewDecoder(resp.Body).Decode(&ms); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Subject == subject {
			return m.ID
		}
	}
	t.Fatalf("no message %q in %+v", subject, ms)
	return ""
}
