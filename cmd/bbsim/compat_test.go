package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestCompatCommand runs the report on RIM's knowledge-base case: a transcoded HTML channel
// fails to open on 6.0.0.141 and opens everywhere else (exit status 1); with transcoding
// turned off by X-RIM-Transcode-Content it opens on every version (exit status 0).
func TestCompatCommand(t *testing.T) {
	t.Parallel()
	out, errOut, code := runBBSim(t, t.Context(), "compat", "--request", "testdata/compat/kb-channel.http")
	if code != 1 || !strings.Contains(errOut, "the push failed on device software 6.0.0.141") {
		t.Fatalf("compat on the KB case: exit %d, want 1\n%s%s", code, out, errOut)
	}
	rows := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.Count(f[0], ".") >= 2 {
			rows[f[0]] = strings.Join(f[1:], " ")
		}
	}
	want := map[string]string{
		"4.2.0":     "BlackBerry Browser 200 channel yes 200 yes",
		"5.0.0":     "BlackBerry Browser 200 channel yes 200 yes",
		"6.0.0.141": "WebKit 200 channel error: transcoded 200 NO",
		"6.0.0.203": "WebKit 200 channel yes 200 yes",
		"7.1.0":     "WebKit 200 channel yes 200 yes",
	}
	for v, w := range want {
		if rows[v] != w {
			t.Errorf("row %s = %q, want %q\n%s", v, rows[v], w, out)
		}
	}
	if !strings.Contains(out, "6.0.0.141: opening the channel showed an error: browser push content is not accessible") {
		t.Errorf("no error text below the table:\n%s", out)
	}

	// The same push from flags, transcoding turned off: every version opens it.
	out, errOut, code = runBBSim(t, t.Context(), "compat", "--json", "--title", "News",
		"--header", "X-RIM-Transcode-Content: none", "--versions", "6.0.0.141,7.1.0")
	var got []struct{ Version, Opened, Notified string }
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 || len(got) != 2 {
		t.Fatalf("compat with transcoding off: exit %d, %v\n%s%s", code, err, out, errOut)
	}
	for _, r := range got {
		if r.Opened != "yes" || r.Notified != "200" {
			t.Errorf("%s: opened %q, notified %q; want yes, 200", r.Version, r.Opened, r.Notified)
		}
	}

	out, errOut, code = runBBSim(t, t.Context(), "compat", "--versions", "6.0.0.141,2.1")
	if code == 0 || !strings.Contains(errOut, `device software "2.1": BlackBerry Device Software ran from 3.x to 7.x`) {
		t.Errorf("compat with version 2.1: exit %d\n%s%s", code, out, errOut)
	}
}

// TestPushHeader: bbsim push --header adds a header to the push (the KB's second way out,
// X-RIM-Transcode-Content), for RIM push on the request and for PAP in the content part.
func TestPushHeader(t *testing.T) {
	t.Parallel()
	got := make(chan string, 2)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/pap" {
			got <- string(b)
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, `<pap><push-response push-id="x"><response-result code="1001" desc="ok"/></push-response></pap>`)
			return
		}
		got <- r.Header.Get("X-Rim-Transcode-Content")
	}))
	t.Cleanup(gw.Close)
	args := []string{"push", "--file", "-", "--gateway", gw.URL, "--to", "2100000A", "--type", "channel",
		"--content-location", "http://x.test/", "--header", "X-RIM-Transcode-Content: none"}
	if out, errOut, code := runBBSim(t, t.Context(), args...); code != 0 || <-got != "none" {
		t.Fatalf("RIM push with --header: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code := runBBSim(t, t.Context(), append(args, "--protocol", "pap")...); code != 0 {
		t.Fatalf("PAP push with --header: exit %d\n%s%s", code, out, errOut)
	} else if body := <-got; !strings.Contains(body, "X-Rim-Transcode-Content: none") {
		t.Fatalf("PAP body without the header in its content part:\n%s", body)
	}
	if _, errOut, code := runBBSim(t, t.Context(), "push", "--gateway", gw.URL, "--to", "2100000A", "--header", "nocolon"); code != 2 ||
		!strings.Contains(errOut, `--header "nocolon": want "Name: value"`) {
		t.Fatalf("bad --header: exit %d, %s", code, errOut)
	}
}
