package emulator

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/muesli/termenv"

	"github.com/bbsim/bbsim/bisclient"
	"github.com/bbsim/bbsim/controlapi"
	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/mailserver"
	"github.com/bbsim/bbsim/ui"
)

func TestMain(m *testing.M) {
	// Screens are compared as plain text, in one time zone.
	lipgloss.SetColorProfile(termenv.Ascii)
	time.Local = time.UTC
	os.Exit(m.Run())
}

// Mail in a legacy charset, HTML-only mail and mail with attachments, as the handset
// fetches them from the bundled IMAP server, shows them on the control API and on screen.
func TestMailOnScreen(t *testing.T) {
	ms, err := mailserver.New(mailserver.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ms.ServeIMAP(ln)

	pdf := strings.Repeat("%PDF-1.4 ", 300) // 2,700 bytes
	mails := []struct{ subject, raw string }{
		{"Café ouvert", "From: =?iso-8859-1?q?Ren=E9?= <rene@example.test>\r\nSubject: =?iso-8859-1?q?Caf=E9_ouvert?=\r\n" +
			"Content-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
			"Le caf=E9 est ouvert d=E8s 8 h.\r\n"},
		{"Weekly news", "From: =?koi8-r?b?" + base64.StdEncoding.EncodeToString([]byte("\xee\xcf\xd7\xcf\xd3\xd4\xc9")) + "?= <news@example.test>\r\nSubject: Weekly news\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" +
			"<html><head><style>p{color:red}</style><script>track()</script></head><body><h1>This week</h1>" +
			"<p>Three <b>new</b> phones. <a href=\"http://news.example/phones\">Read more</a></p><ul><li>Bold</li><li>Curve</li></ul></body></html>\r\n"},
		{"Report", "From: bob@example.test\r\nSubject: Report\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n" +
			"--m\r\nContent-Type: multipart/alternative; boundary=a\r\n\r\n" +
			"--a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe report is attached.\r\n" +
			"--a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>The <b>report</b> is attached.</p>\r\n--a--\r\n" +
			"--m\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf\r\n" +
			"Content-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString([]byte(pdf)) + "\r\n" +
			"--m\r\nContent-Type: image/png; name=chart.png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--m--\r\n"},
	}
	for _, m := range mails {
		if err := ms.Deliver(t.Context(), "bob@example.test", []string{"alice@bbsim.test"}, []byte(m.raw)); err != nil {
			t.Fatal(err)
		}
	}

	// The clock is read by the screen while a message opens beside it, off the TUI's Update.
	var clockMu sync.Mutex
	now := time.Date(2026, 11, 22, 9, 41, 0, 0, time.UTC)
	clock := func(step time.Duration) time.Time {
		clockMu.Lock()
		defer clockMu.Unlock()
		now = now.Add(step)
		return now
	}
	h, err := handset.New(handset.Options{PIN: "2100000A", Email: "alice@bbsim.test", Dir: t.TempDir(),
		Now: func() time.Time { return clock(time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	bc, err := bisclient.New(bisclient.Options{Handset: h, Server: ln.Addr().String(), Password: "blackberry"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- bc.Run(ctx) }()
	deadline := time.Now().Add(15 * time.Second)
	for len(h.Messages()) < len(mails) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages reached the handset", len(h.Messages()), len(mails))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The screens below show the mail status: stop the client so it stays "off".
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	api := httptest.NewServer(controlapi.New(h, controlapi.Options{}).Handler())
	t.Cleanup(api.Close)
	type apiMessage struct {
		Subject     string               `json:"subject"`
		From        string               `json:"from"`
		ContentType string               `json:"content_type"`
		Text        string               `json:"text"`
		Attachments []handset.Attachment `json:"attachments"`
	}
	get := func(id string) apiMessage {
		t.Helper()
		resp, err := http.Get(api.URL + "/api/v1/messages/" + id)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m apiMessage
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET message %s: %d %v", id, resp.StatusCode, err)
		}
		return m
	}
	ids := map[string]string{}
	for _, m := range h.Messages() {
		ids[m.Subject] = m.ID
	}
	if m := get(ids["Café ouvert"]); m.From != "René <rene@example.test>" || m.ContentType != "text/plain" || m.Text != "Le café est ouvert dès 8 h." {
		t.Errorf("latin-1 message on the API: %+v", m)
	}
	if m := get(ids["Weekly news"]); m.From != "Новости <news@example.test>" || m.ContentType != "text/html" || m.Text != "This week\n=========\n\nThree new phones. Read more[1]\n\n* Bold\n* Curve\n\nReferences\n[1] http://news.example/phones" {
		t.Errorf("HTML message on the API: %+v", m)
	}
	want := []handset.Attachment{{Name: "résumé.pdf", ContentType: "application/pdf", Size: 2700}, {Name: "chart.png", ContentType: "image/png", Size: 8}}
	if m := get(ids["Report"]); m.ContentType != "text/plain" || m.Text != "The report is attached." || fmt.Sprint(m.Attachments) != fmt.Sprint(want) {
		t.Errorf("message with attachments on the API: %+v", m)
	}

	// On screen: open each from the message list (newest first) and keep what it shows.
	for i, m := range h.Messages() {
		name := map[string]string{"Café ouvert": "latin-1", "Weekly news": "html", "Report": "attachments"}[m.Subject]
		t.Run(name, func(t *testing.T) {
			tm := teatest.NewTestModel(t, ui.New(h, ui.Options{Now: func() time.Time { return clock(0) }}), teatest.WithInitialTermSize(80, 30))
			waitFor(t, tm, "Messages (")
			tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("m")})
			waitFor(t, tm, "Report")
			for range i {
				tm.Send(tea.KeyMsg{Type: tea.KeyDown})
			}
			tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
			waitFor(t, tm, "Date: ")
			tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("q")})
			fm := tm.FinalModel(t, teatest.WithFinalTimeout(5*time.Second))
			golden.RequireEqual(t, []byte(fm.View()))
		})
	}
}

func waitFor(t *testing.T, tm *teatest.TestModel, want string) {
	t.Helper()
	teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return strings.Contains(string(b), want) },
		teatest.WithDuration(10*time.Second), teatest.WithCheckInterval(10*time.Millisecond))
}
