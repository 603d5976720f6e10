package pushserver

import (
	"bufio"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bbsim/bbsim/rim"
)

// papMultipart builds a PAP push body the way RIM's BrowserPapPushDemo does (CRLF lines,
// multipart/related with the control entity first).
func papMultipart(doctype, pushMsg, contentHeaders, content string) (string, string) {
	const boundary = "asdlfkjiurwghasf"
	body := "--" + boundary + "\r\n" +
		"Content-Type: application/xml; charset=UTF-8\r\n\r\n" +
		"<?xml version=\"1.0\"?>\r\n" + doctype + "\r\n<pap>\r\n" + pushMsg + "\r\n</pap>\r\n" +
		"--" + boundary + "\r\n" + contentHeaders + "\r\n" + content + "\r\n" +
		"--" + boundary + "--\r\n"
	return body, `multipart/related; type="application/xml"; boundary=` + boundary
}

const mdsDoctype = `<!DOCTYPE pap PUBLIC "-//WAPFORUM//DTD PAP 2.0//EN" "http://www.wapforum.org/DTD/pap_2.0.dtd" [<?wap-pap-ver supported-versions="2.0,1.*"?>]>`

// rawPOST writes an HTTP/1.1 request byte for byte on a TCP connection and reads the answer.
func rawPOST(t testing.TB, base, path, ctype, body string, extra ...string) (int, string) {
	t.Helper()
	addr := strings.TrimPrefix(base, "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "POST " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: " + ctype + "\r\n" +
		strings.Join(extra, "") + fmt.Sprintf("Content-Length: %d\r\nConnection: close\r\n\r\n", len(body)) + body
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type papAnswer struct {
	PushResponse *struct {
		PushID string `xml:"push-id,attr"`
		Result struct {
			Code int `xml:"code,attr"`
		} `xml:"response-result"`
	} `xml:"push-response"`
	BadMessage *struct {
		Code int    `xml:"code,attr"`
		Desc string `xml:"desc,attr"`
	} `xml:"badmessage-response"`
	StatusQuery *struct {
		Results []struct {
			Code    int    `xml:"code,attr"`
			State   string `xml:"message-state,attr"`
			Address struct {
				Value string `xml:"address-value,attr"`
			} `xml:"address"`
		} `xml:"statusquery-result"`
	} `xml:"statusquery-response"`
	Cancel *struct {
		Result struct {
			Code int `xml:"code,attr"`
		} `xml:"cancel-result"`
	} `xml:"cancel-response"`
}

func decodeAnswer(t testing.TB, body string) papAnswer {
	t.Helper()
	var a papAnswer
	d := xml.NewDecoder(strings.NewReader(body))
	if err := d.Decode(&a); err != nil {
		t.Fatalf("answer %q: %v", body, err)
	}
	return a
}

func TestPAPPushAllAddressForms(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	nt := newNotifications(t)
	_, base := startServer(t, Options{Devices: seedDevices()})
	for _, p := range []string{pinA, pinB, pinC} {
		attach(t, base, rc, p)
	}
	tests := []struct {
		name, doctype, address, method string
		pin                            string
		port                           int
		reliability                    string
	}{
		{"mds email", mdsDoctype, "WAPPUSH=alice%40bbsim.test%3A7874/TYPE=USER@rim.net", "unconfirmed", pinA, 7874, "transport"},
		{"mds pin blackberry.com", papDoctype20, "WAPPUSH=2100000B%3A100/TYPE=USER@blackberry.com", "notspecified", pinB, 100, "transport"},
		{"bis bare pin", papDoctype21, "2100000c", "preferconfirmed", pinC, 7874, "transport"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("pap-%d", i)
			msg := fmt.Sprintf(`<push-message push-id="%s" deliver-before-timestamp="%s" ppg-notify-requested-to="%s">`+"\r\n"+
				`<address address-value="%s"/>`+"\r\n"+`<quality-of-service delivery-method="%s"/>`+"\r\n</push-message>",
				id, time.Now().Add(time.Hour).UTC().Format(papTimeLayout), nt.srv.URL, tc.address, tc.method)
			body, ctype := papMultipart(tc.doctype, msg, "Content-Type: text/html\r\nX-RIM-Push-Title: PAP\r\nX-RIM-Push-Type: Browser-Message\r\nContent-Location: http://e.com/pap\r\n", "<p>pap</p>")
			code, ans := rawPOST(t, base, "/pap", ctype, body)
			a := decodeAnswer(t, ans)
			if code != 202 || a.PushResponse == nil || a.PushResponse.Result.Code != 1001 || a.PushResponse.PushID != id {
				t.Fatalf("POST /pap = %d %s, want 202 with 1001", code, ans)
			}
			wantDT := "PAP 2.0"
			if tc.doctype == papDoctype21 {
				wantDT = "PAP 2.1"
			}
			if !strings.Contains(ans, wantDT) {
				t.Errorf("answer DOCTYPE is not %s: %s", wantDT, ans)
			}
			d := rc.wait(t, 1)[0]
			if d.PushID != id || d.PIN != tc.pin || d.Port != tc.port || string(d.Body) != "<p>pap</p>" ||
				d.Header.Get("X-RIM-Push-Title") != "PAP" || d.Header.Get("X-RIM-Push-Reliability-Mode") != tc.reliability {
				t.Fatalf("delivery = %+v", d)
			}
			n := nt.wait(t, 1)[0]
			if !strings.Contains(n.Body, "resultnotification-message") || !strings.Contains(n.Body, `message-state="delivered"`) ||
				!strings.Contains(n.Body, `code="1000"`) || !strings.Contains(n.Body, tc.pin) {
				t.Fatalf("notification = %s", n.Body)
			}
		})
	}
}

func TestPAPConfirmedDelivery(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	s, base := startServer(t, Options{Devices: seedDevices()})
	attach(t, base, rc, pinA)
	for _, m := range []string{"confirmed", "application-level"} {
		id := "conf-" + m
		msg := `<push-message push-id="` + id + `"><address address-value="2100000A"/><quality-of-service delivery-method="` + m + `"/></push-message>`
		body, ctype := papMultipart(papDoctype21, msg, "Content-Type: text/plain\r\n", "x")
		if code, ans := rawPOST(t, base, "/pap", ctype, body); code != 202 {
			t.Fatalf("POST /pap = %d %s", code, ans)
		}
		if d := rc.wait(t, 1)[0]; d.Header.Get("X-RIM-Push-Reliability-Mode") != "application" {
			t.Fatalf("%s delivered as %q", m, d.Header.Get("X-RIM-Push-Reliability-Mode"))
		}
		waitState(t, s, id, pinA, rim.StatePending)
	}
}

func TestPAPErrors(t *testing.T) {
	t.Parallel()
	s, base := startServer(t, Options{Devices: seedDevices(), MaxActive: 2})
	okMsg := `<push-message push-id="dup"><address address-value="2100000A"/></push-message>`
	body, ctype := papMultipart(papDoctype20, okMsg, "Content-Type: text/plain\r\n", "x")
	if code, ans := rawPOST(t, base, "/pap", ctype, body); code != 202 {
		t.Fatalf("first push = %d %s", code, ans)
	}
	push := func(msg string) (string, string) {
		return papMultipart(papDoctype20, msg, "Content-Type: text/plain\r\n", "x")
	}
	tests := []struct {
		name      string
		body      func() (string, string)
		status    int
		bad, resp int
	}{
		{"malformed xml", func() (string, string) {
			return push(`<push-message push-id="x"><address address-value="2100000A"></push-message>`)
		}, 400, 2000, 0},
		{"entity declaration", func() (string, string) {
			b := "--b\r\nContent-Type: application/xml\r\n\r\n<?xml version=\"1.0\"?>\r\n<!DOCTYPE pap [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]>\r\n<pap><push-message push-id=\"&b;\"><address address-value=\"2100000A\"/></push-message></pap>\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n"
			return b, "multipart/related; boundary=b"
		}, 400, 2000, 0},
		{"external entity", func() (string, string) {
			return "<?xml version=\"1.0\"?><!DOCTYPE pap SYSTEM \"http://127.0.0.1:1/x.dtd\"><pap><statusquery-message push-id=\"&x;\"/></pap>", "application/xml"
		}, 400, 2000, 0},
		{"wrong root", func() (string, string) { return `<?xml version="1.0"?><foo/>`, "application/xml" }, 400, 2000, 0},
		{"no content part", func() (string, string) {
			return `<?xml version="1.0"?><pap><push-message push-id="n"><address address-value="2100000A"/></push-message></pap>`, "application/xml"
		}, 400, 2000, 0},
		{"bad timestamp", func() (string, string) {
			return push(`<push-message push-id="t" deliver-before-timestamp="tomorrow"><address address-value="2100000A"/></push-message>`)
		}, 400, 2000, 0},
		{"unknown address", func() (string, string) {
			return push(`<push-message push-id="u"><address address-value="WAPPUSH=nobody%40bbsim.test%3A7874/TYPE=USER@rim.net"/></push-message>`)
		}, 202, 0, 2002},
		{"bad address type", func() (string, string) {
			return push(`<push-message push-id="u2"><address address-value="WAPPUSH=2100000A/TYPE=PLMN@rim.net"/></push-message>`)
		}, 202, 0, 2002},
		{"duplicate push-id", func() (string, string) { return push(okMsg) }, 202, 0, 2007},
		{"replace unknown", func() (string, string) {
			return push(`<push-message push-id="r" replace-push-id="nope" replace-method="all"><address address-value="2100000A"/></push-message>`)
		}, 202, 0, 2004},
		{"wrong content type", func() (string, string) { return "x", "text/plain" }, 400, 2000, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, ct := tc.body()
			code, ans := rawPOST(t, base, "/pap", ct, b)
			a := decodeAnswer(t, ans)
			if code != tc.status {
				t.Fatalf("status = %d, want %d: %s", code, tc.status, ans)
			}
			if tc.bad != 0 && (a.BadMessage == nil || a.BadMessage.Code != tc.bad) {
				t.Fatalf("answer = %s, want badmessage-response %d", ans, tc.bad)
			}
			if tc.resp != 0 && (a.PushResponse == nil || a.PushResponse.Result.Code != tc.resp) {
				t.Fatalf("answer = %s, want push-response %d", ans, tc.resp)
			}
		})
	}
	// At the limit: 4001 with HTTP 503.
	b, ct := push(`<push-message push-id="second"><address address-value="2100000A"/></push-message>`)
	if code, ans := rawPOST(t, base, "/pap", ct, b); code != 202 {
		t.Fatalf("second push = %d %s", code, ans)
	}
	// A replacement refused at the limit leaves the original queued.
	b, ct = push(`<push-message push-id="third" replace-push-id="second"><address address-value="2100000A"/></push-message>`)
	code, ans := rawPOST(t, base, "/pap", ct, b)
	if a := decodeAnswer(t, ans); code != 503 || a.PushResponse == nil || a.PushResponse.Result.Code != 4001 {
		t.Fatalf("push at the limit = %d %s, want 503 with 4001", code, ans)
	}
	if _, err := s.PushState("third"); err != ErrNotFound {
		t.Fatalf("refused push was stored: %v", err)
	}
	if ps, err := s.PushState("second"); err != nil || ps.Recipients[0].State != rim.StateQueued {
		t.Fatalf("original of a refused replacement = %+v, %v; want queued", ps, err)
	}
}

func TestPAPStatusCancelReplace(t *testing.T) {
	t.Parallel()
	papStatusCancelReplace(t, Options{Devices: seedDevices()})
}

// papStatusCancelReplace is TestPAPStatusCancelReplace with the server's options (its store).
func papStatusCancelReplace(t *testing.T, opts Options) {
	rc := newReceiver(t)
	nt := newNotifications(t)
	_, base := startServer(t, opts)
	push := func(msg string) (int, string) {
		b, ct := papMultipart(papDoctype20, msg, "Content-Type: text/plain\r\n", "content of "+msg[:30])
		return rawPOST(t, base, "/pap", ct, b)
	}
	query := func(kind, id string) papAnswer {
		code, ans := rawPOST(t, base, "/pap", "application/xml", `<?xml version="1.0"?>`+"\r\n"+papDoctype20+"\r\n"+`<pap><`+kind+` push-id="`+id+`"/></pap>`)
		if code != 202 {
			t.Fatalf("%s = %d %s, want 202", kind, code, ans)
		}
		return decodeAnswer(t, ans)
	}
	// Device B is away: the pushes stay queued.
	if code, ans := push(`<push-message push-id="p1" ppg-notify-requested-to="` + nt.srv.URL + `"><address address-value="2100000B"/><address address-value="2100000C"/></push-message>`); code != 202 {
		t.Fatalf("p1 = %d %s", code, ans)
	}
	a := query("statusquery-message", "p1")
	if a.StatusQuery == nil || len(a.StatusQuery.Results) != 2 || a.StatusQuery.Results[0].State != rim.MessageStatePending {
		t.Fatalf("status query = %+v", a.StatusQuery)
	}
	if a := query("statusquery-message", "none"); a.StatusQuery.Results[0].Code != 2004 {
		t.Fatalf("status of unknown = %+v", a.StatusQuery)
	}
	// Cancel p1: both recipients cancelled, notifications say so.
	if a := query("cancel-message", "p1"); a.Cancel == nil || a.Cancel.Result.Code != 1000 {
		t.Fatalf("cancel = %+v", a.Cancel)
	}
	for _, n := range nt.wait(t, 2) {
		if !strings.Contains(n.Body, `message-state="cancelled"`) {
			t.Fatalf("notification = %s", n.Body)
		}
	}
	if a := query("cancel-message", "p1"); a.Cancel.Result.Code != 2008 {
		t.Fatalf("second cancel = %+v, want 2008", a.Cancel)
	}
	if a := query("cancel-message", "nope"); a.Cancel.Result.Code != 2004 {
		t.Fatalf("cancel unknown = %+v, want 2004", a.Cancel)
	}
	a = query("statusquery-message", "p1")
	if a.StatusQuery.Results[1].State != rim.MessageStateCancelled {
		t.Fatalf("status after cancel = %+v", a.StatusQuery)
	}
	// Replace: p2 queued, p3 replaces it; only p3 arrives.
	if code, ans := push(`<push-message push-id="p2"><address address-value="2100000B"/></push-message>`); code != 202 {
		t.Fatalf("p2 = %d %s", code, ans)
	}
	if code, ans := push(`<push-message push-id="p3" replace-push-id="p2" replace-method="pending-only"><address address-value="2100000B"/></push-message>`); code != 202 {
		t.Fatalf("p3 = %d %s", code, ans)
	}
	attach(t, base, rc, pinB)
	if d := rc.wait(t, 1)[0]; d.PushID != "p3" {
		t.Fatalf("delivered %s, want p3", d.PushID)
	}
	rc.none(t, 100*time.Millisecond)
	if a := query("statusquery-message", "p2"); a.StatusQuery.Results[0].State != rim.MessageStateCancelled {
		t.Fatalf("p2 = %+v, want cancelled", a.StatusQuery)
	}
}

func TestPAPDeliverAfterAndExpiry(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	nt := newNotifications(t)
	_, base := startServer(t, Options{Devices: seedDevices(), FlowControlTimeout: 400 * time.Millisecond})
	attach(t, base, rc, pinA)
	after := time.Now().Add(1100 * time.Millisecond).UTC().Truncate(time.Second).Add(time.Second)
	msg := `<push-message push-id="da" deliver-after-timestamp="` + after.Format(papTimeLayout) + `"><address address-value="2100000A"/></push-message>`
	b, ct := papMultipart(papDoctype21, msg, "Content-Type: text/plain\r\n", "later")
	if code, ans := rawPOST(t, base, "/pap", ct, b); code != 202 {
		t.Fatalf("push = %d %s", code, ans)
	}
	d := rc.wait(t, 1)[0]
	if now := time.Now(); now.Before(after.Add(-50 * time.Millisecond)) {
		t.Fatalf("delivered at %v, before deliver-after %v", now, after)
	}
	if d.PushID != "da" {
		t.Fatalf("delivered %s", d.PushID)
	}
	// Device C never attaches: expired with 4500.
	msg = `<push-message push-id="ex" ppg-notify-requested-to="` + nt.srv.URL + `"><address address-value="2100000C"/></push-message>`
	b, ct = papMultipart(papDoctype21, msg, "Content-Type: text/plain\r\n", "never")
	rawPOST(t, base, "/pap", ct, b)
	n := nt.wait(t, 1)[0]
	if !strings.Contains(n.Body, `message-state="expired"`) || !strings.Contains(n.Body, `code="4500"`) {
		t.Fatalf("notification = %s", n.Body)
	}
}

func TestPushAuth(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	_, base := startServer(t, Options{Devices: seedDevices(), Groups: map[string][]string{"team": {pinB}, "other": {pinA}},
		PushAuth: []Initiator{{Name: "app", Password: "s3cret"}, {Name: "limited", Password: "pw", Allowed: []string{"2100000a", "$team"}}}})
	attach(t, base, rc, pinA)
	tests := []struct {
		name, user, pass, query string
		want                    int
	}{
		{"missing", "", "", "DESTINATION=2100000A", 401},
		{"wrong password", "app", "nope", "DESTINATION=2100000A", 403},
		{"unknown user", "who", "s3cret", "DESTINATION=2100000A", 403},
		{"ok", "app", "s3cret", "DESTINATION=2100000A", 200},
		{"group not allowed for unrestricted", "app", "s3cret", "DESTINATION=%24team", 403},
		{"limited allowed pin", "limited", "pw", "DESTINATION=2100000A", 200},
		{"limited via group member", "limited", "pw", "DESTINATION=2100000B", 200},
		{"limited allowed group", "limited", "pw", "DESTINATION=%24team", 200},
		{"limited other group", "limited", "pw", "DESTINATION=%24other", 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", base+"/push?"+tc.query, strings.NewReader("x"))
			if tc.user != "" {
				req.SetBasicAuth(tc.user, tc.pass)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
				t.Fatalf("401 without a Basic challenge")
			}
		})
	}
	// A limited initiator cannot reach C through PAP either.
	b, ct := papMultipart(papDoctype20, `<push-message push-id="lim"><address address-value="WAPPUSH=carol%40bbsim.test%3A7874/TYPE=USER@rim.net"/></push-message>`, "Content-Type: text/plain\r\n", "x")
	code, ans := rawPOST(t, base, "/pap", ct, b, "Authorization: Basic bGltaXRlZDpwdw==\r\n")
	if a := decodeAnswer(t, ans); code != 403 || a.PushResponse == nil || a.PushResponse.Result.Code != 2001 {
		t.Fatalf("PAP to a forbidden recipient = %d %s, want 403 with 2001", code, ans)
	}
}

func TestSlowSenderTimedOut(t *testing.T) {
	t.Parallel()
	_, base := startServer(t, Options{ReadHeaderTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /push?DESTINATION=2100000A HTTP/1.1\r\nHost: x\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, err = io.ReadAll(c)
	if err != nil {
		t.Fatalf("connection not closed by the server: %v", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("closed after %v", el)
	}
}

func TestPAPBodyLimit(t *testing.T) {
	t.Parallel()
	_, base := startServer(t, Options{Devices: seedDevices(), MaxBodyBytes: 2000})
	b, ct := papMultipart(papDoctype20, `<push-message push-id="big"><address address-value="2100000A"/></push-message>`, "Content-Type: text/plain\r\n", strings.Repeat("x", 3000))
	code, ans := rawPOST(t, base, "/pap", ct, b)
	if a := decodeAnswer(t, ans); code != 413 || a.BadMessage == nil || a.BadMessage.Code != 2000 {
		t.Fatalf("oversized PAP = %d %s, want 413 with badmessage 2000", code, ans)
	}
}

func TestPAPPushAll(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	_, base := startServer(t, Options{Devices: seedDevices()})
	for _, p := range []string{pinA, pinB, pinC} {
		attach(t, base, rc, p)
	}
	b, ct := papMultipart(papDoctype21, `<push-message push-id="all" source-reference="app"><address address-value="push_all"/><quality-of-service delivery-method="unconfirmed"/></push-message>`, "Content-Type: text/plain\r\n", "to everyone")
	if code, ans := rawPOST(t, base, "/pap", ct, b); code != 202 {
		t.Fatalf("push_all = %d %s", code, ans)
	}
	got := map[string]bool{}
	for _, d := range rc.wait(t, 3) {
		got[d.PIN] = d.PushID == "all" && string(d.Body) == "to everyone"
	}
	if !got[pinA] || !got[pinB] || !got[pinC] {
		t.Fatalf("push_all reached %v", got)
	}
}

// TestPAPCancelByAddress cancels one recipient of a push by its address as the initiator
// wrote it: only that one is cancelled, each address gets its own result, and an address
// that names no recipient of the push gets 2002.
func TestPAPCancelByAddress(t *testing.T) {
	t.Parallel()
	_, base := startServer(t, Options{Devices: seedDevices()})
	// Devices B and C are away: the push stays queued for both.
	b, ct := papMultipart(papDoctype20, `<push-message push-id="c1"><address address-value="2100000B"/><address address-value="WAPPUSH=carol%40bbsim.test%3A7874/TYPE=USER@rim.net"/></push-message>`, "Content-Type: text/plain\r\n", "x")
	if code, ans := rawPOST(t, base, "/pap", ct, b); code != 202 {
		t.Fatalf("push = %d %s", code, ans)
	}
	q := func(kind string, addrs ...string) (int, string) {
		var as strings.Builder
		for _, a := range addrs {
			as.WriteString(`<address address-value="` + a + `"/>`)
		}
		return rawPOST(t, base, "/pap", "application/xml", `<?xml version="1.0"?>`+papDoctype20+`<pap><`+kind+` push-id="c1">`+as.String()+`</`+kind+`></pap>`)
	}
	bob := "WAPPUSH=bob%40bbsim.test%3A7874/TYPE=USER@rim.net"
	code, ans := q("cancel-message", bob, "2100000A")
	if code != 202 {
		t.Fatalf("cancel = %d, want 202: %s", code, ans)
	}
	for _, want := range []string{`<cancel-result code="1000" desc="Cancelled">` + "\n" + `<address address-value="` + bob + `"/>`,
		`<cancel-result code="2002"`, `<address address-value="2100000A"/>`} {
		if !strings.Contains(ans, want) {
			t.Fatalf("cancel answer lacks %q:\n%s", want, ans)
		}
	}
	// Carol's recipient was left queued: cancelling it now succeeds.
	code, ans = q("cancel-message", "carol@bbsim.test")
	if code != 202 || !strings.Contains(ans, `<cancel-result code="1000" desc="Cancelled">`+"\n"+`<address address-value="carol@bbsim.test"/>`) {
		t.Fatalf("cancel of the recipient left = %d %s, want 1000 naming carol@bbsim.test", code, ans)
	}
}
