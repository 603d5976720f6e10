package ui

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/muesli/termenv"

	"github.com/bbsim/bbsim/handset"
)

func TestMain(m *testing.M) {
	lipgloss.SetColorProfile(termenv.Ascii)
	time.Local = time.UTC
	os.Exit(m.Run())
}

var fixed = time.Date(2026, 11, 22, 9, 41, 0, 0, time.UTC)

// seeded is a handset with mail, browser messages, channels, an app and events, all at
// fixed times.
func seeded(t *testing.T) *handset.Handset {
	t.Helper()
	now := fixed
	h, err := handset.New(handset.Options{PIN: "2100000A", Email: "alice@bbsim.test", Dir: t.TempDir(),
		Now: func() time.Time { now = now.Add(time.Second); return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	h.UpdateMail(func(s *handset.MailStatus) {
		s.State, s.Protocol, s.Server = handset.MailIdling, "imap", "127.0.0.1:1143"
	})
	h.Emit(handset.EventMailIdle, "IDLE started", nil)
	h.Emit(handset.EventMailBye, "server said BYE: [UNAVAILABLE] Disconnected for a POP3 session on this mailbox", nil)
	for i, s := range []string{"Quarterly figures", "Lunch on Friday?"} {
		if _, _, err := h.AddMessage(handset.Message{Kind: handset.KindEmail, From: "bob@example.test", Subject: s,
			Key: fmt.Sprint("k", i), Text: "Hello Alice,\n\nthe " + s + ".\n\nBob"}); err != nil {
			t.Fatal(err)
		}
	}
	h.AddMessage(handset.Message{Kind: handset.KindBrowser, From: "browser push", Subject: "Flash sale", URL: "http://shop.test/sale",
		Key: "b1", Text: "Everything must go[1].", Links: []string{"http://shop.test/go"}})
	var icon bytes.Buffer
	img := image.NewRGBA(image.Rect(0, 0, 16, 16))
	for x := range 16 {
		for y := range 16 {
			img.Set(x, y, color.RGBA{uint8(x * 16), 80, uint8(y * 16), 255})
		}
	}
	png.Encode(&icon, img)
	h.UpsertChannel(handset.Channel{ChannelID: "http://news.test/", Title: "News", URL: "http://news.test/",
		UnreadIcon: icon.Bytes(), UnreadIconLoaded: true, ReadIcon: icon.Bytes(), ReadIconLoaded: true, IconsLoaded: true})
	h.PutCache(handset.CacheEntry{URL: "http://news.test/", ContentType: "text/html", Text: "Today\n=====\n\nAll quiet[1].", Links: []string{"http://news.test/more"}})
	h.UpsertChannel(handset.Channel{ChannelID: "http://weather.test/", Title: "Weather", URL: "http://weather.test/"})
	h.DeclareApp("com.example.chat", 33333, "")
	return h
}

var screens = []string{ScreenHome, ScreenMessages, ScreenMessage, ScreenBrowser, ScreenPage, ScreenEvents, ScreenOptions, ScreenHelp, ScreenApp}

func opts() Options {
	return Options{Now: func() time.Time { return fixed }, Servers: []Server{{"imap", "127.0.0.1:1143"}, {"push", "127.0.0.1:8080"}}}
}

func TestGoldenScreens(t *testing.T) {
	h := seeded(t)
	for _, size := range [][2]int{{80, 24}, {120, 40}} {
		for _, s := range screens {
			t.Run(fmt.Sprintf("%s-%dx%d", s, size[0], size[1]), func(t *testing.T) {
				out := Render(h, opts(), s, size[0], size[1])
				golden.RequireEqual(t, []byte(out))
			})
		}
	}
}

func TestNeverWiderThanTheTerminal(t *testing.T) {
	h := seeded(t)
	for _, size := range [][2]int{{80, 24}, {120, 40}, {60, 20}} {
		for _, s := range screens {
			out := Render(h, opts(), s, size[0], size[1])
			lines := strings.Split(out, "\n")
			if len(lines) > size[1] {
				t.Errorf("%s at %dx%d: %d lines", s, size[0], size[1], len(lines))
			}
			for i, l := range lines {
				if w := lipgloss.Width(l); w > size[0] {
					t.Errorf("%s at %dx%d: line %d is %d wide: %q", s, size[0], size[1], i, w, l)
				}
			}
		}
	}
}

func waitScreen(t *testing.T, tm *teatest.TestModel, want string) {
	t.Helper()
	teatest.WaitFor(t, tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte(want)) },
		teatest.WithDuration(5*time.Second), teatest.WithCheckInterval(10*time.Millisecond))
}

func key(s string) tea.KeyMsg {
	switch s {
	case "enter":
		return tea.KeyMsg{Type: tea.KeyEnter}
	case "esc":
		return tea.KeyMsg{Type: tea.KeyEsc}
	case "right":
		return tea.KeyMsg{Type: tea.KeyRight}
	case "down":
		return tea.KeyMsg{Type: tea.KeyDown}
	}
	return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)}
}

func TestOpenChannelTurnsRead(t *testing.T) {
	h := seeded(t)
	news := h.Channels()[1]
	if news.Title != "News" {
		news = h.Channels()[0]
	}
	tm := teatest.NewTestModel(t, New(h, opts()), teatest.WithInitialTermSize(100, 30))
	waitScreen(t, tm, "Messages (")
	tm.Send(key("b"))
	waitScreen(t, tm, "Browser: 2 channels")
	// Move to News and open it.
	for i, c := range h.Channels() {
		if c.ID == news.ID {
			for range i {
				tm.Send(key("down"))
			}
		}
	}
	tm.Send(key("enter"))
	waitScreen(t, tm, "All quiet")
	tm.Send(key("esc"))
	tm.Send(key("q"))
	tm.WaitFinished(t, teatest.WithFinalTimeout(5*time.Second))
	c, err := h.Channel(news.ID)
	if err != nil || !c.Read {
		t.Fatalf("channel after opening: %+v %v", c, err)
	}
	if out := Render(h, opts(), ScreenBrowser, 100, 30); !strings.Contains(out, "News                  read") {
		t.Fatalf("browser list does not show News as read:\n%s", out)
	}
}

func TestCoverageKey(t *testing.T) {
	h := seeded(t)
	tm := teatest.NewTestModel(t, New(h, opts()), teatest.WithInitialTermSize(80, 24))
	waitScreen(t, tm, "mail idling")
	tm.Send(key("c"))
	waitScreen(t, tm, "out of coverage")
	if in, _ := h.Coverage(); in {
		t.Fatal("coverage still on after c")
	}
	tm.Send(key("q"))
	tm.WaitFinished(t, teatest.WithFinalTimeout(5*time.Second))
}

func TestLiveMailBanner(t *testing.T) {
	h := seeded(t)
	tm := teatest.NewTestModel(t, New(h, opts()), teatest.WithInitialTermSize(80, 24))
	waitScreen(t, tm, "Messages (")
	h.AddMessage(handset.Message{Kind: handset.KindEmail, From: "carol@example.test", Subject: "Just arrived", Key: "live"})
	waitScreen(t, tm, "New mail: Just arrived")
	tm.Send(key("m"))
	waitScreen(t, tm, "carol@example.test")
	tm.Send(key("q"))
	tm.WaitFinished(t, teatest.WithFinalTimeout(5*time.Second))
}

func TestMouseOpensTile(t *testing.T) {
	h := seeded(t)
	tm := teatest.NewTestModel(t, New(h, opts()), teatest.WithInitialTermSize(100, 30))
	waitScreen(t, tm, "Messages (")
	// The first tile (Messages) is at the top left of the body.
	tm.Send(tea.MouseMsg{X: 5, Y: 4, Action: tea.MouseActionPress, Button: tea.MouseButtonLeft})
	waitScreen(t, tm, "Lunch on Friday?")
	tm.Send(key("q"))
	tm.WaitFinished(t, teatest.WithFinalTimeout(5*time.Second))
}

// The README's screenshot is the golden home screen: both come from Render.
func TestREADMEScreenshot(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	shot, err := os.ReadFile("testdata/TestGoldenScreens/home-80x24.golden")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "<!-- screenshot:home-80x24 -->\n```text\n")
	if !ok {
		t.Fatal("README has no screenshot block")
	}
	got, _, _ := strings.Cut(rest, "\n```")
	if got != strings.TrimRight(string(shot), "\n") {
		t.Fatalf("README screenshot differs from the home golden; copy testdata/TestGoldenScreens/home-80x24.golden into it")
	}
}

// With colour, a loaded icon is drawn in half blocks; without it, or when the icon did
// not load, a glyph says unread or read.
func TestChannelIconDrawing(t *testing.T) {
	h := seeded(t)
	var news, weather handset.Channel
	for _, c := range h.Channels() {
		switch c.Title {
		case "News":
			news = c
		case "Weather":
			weather = c
		}
	}
	lipgloss.SetColorProfile(termenv.TrueColor)
	defer lipgloss.SetColorProfile(termenv.Ascii)
	lines := channelIcon(news)
	if len(lines) != iconRows || !strings.Contains(lines[0], "▀") || !strings.Contains(lines[0], "\x1b[") {
		t.Fatalf("colour icon %q", lines)
	}
	for _, l := range lines {
		if w := lipgloss.Width(l); w != iconCols {
			t.Errorf("icon line %d cells wide", w)
		}
	}
	if got := strings.Join(channelIcon(weather), "\n"); !strings.Contains(got, "[*]") {
		t.Errorf("unloaded unread icon %q", got)
	}
	weather.Read = true
	if got := strings.Join(channelIcon(weather), "\n"); !strings.Contains(got, "[ ]") {
		t.Errorf("unloaded read icon %q", got)
	}
	if _, ok := halfBlocks([]byte("not an image")); ok {
		t.Error("garbage decoded as an icon")
	}
}

// TestGoldenEmptyScreens: with nothing received, the empty screens suggest commands that
// name this run's SMTP server and gateway, laid out to be typed as shown.
func TestGoldenEmptyScreens(t *testing.T) {
	h, err := handset.New(handset.Options{PIN: "2100000A", Email: "alice@bbsim.test"})
	if err != nil {
		t.Fatal(err)
	}
	o := opts()
	o.SMTP, o.PushURL = "127.0.0.1:22525", "http://127.0.0.1:18080"
	for _, s := range []string{ScreenMessages, ScreenBrowser} {
		t.Run(s+"-80x24", func(t *testing.T) {
			out := Render(h, o, s, 80, 24)
			golden.RequireEqual(t, []byte(out))
			if !strings.Contains(out, "127.0.0.1:") {
				t.Errorf("no port of this run in the hint:\n%s", out)
			}
		})
	}
}

// TestFooterFits: at 80 and 100 columns every screen's footer ends with "? help · q quit"
// and names where esc goes.
func TestFooterFits(t *testing.T) {
	h := seeded(t)
	for _, w := range []int{80, 100} {
		for _, s := range screens {
			lines := strings.Split(Render(h, opts(), s, w, 24), "\n")
			foot := lines[len(lines)-2]
			if !strings.Contains(foot, "? help · q quit") {
				t.Errorf("%s at %d columns: footer %q", s, w, foot)
			}
			if s != ScreenHome && !strings.Contains(foot, "esc ‹ home") {
				t.Errorf("%s at %d columns: footer %q does not say where esc goes", s, w, foot)
			}
		}
	}
}

// TestAppScreenAndDoubleEsc: enter on a push app's icon opens its screen; two esc presses
// in quick succession (one alt+esc) go back twice.
func TestAppScreenAndDoubleEsc(t *testing.T) {
	h := seeded(t)
	h.AddAppPush(33333, handset.AppPush{ID: "p1", ContentType: "text/plain", Body: "hello app"})
	tm := teatest.NewTestModel(t, New(h, opts()), teatest.WithInitialTermSize(100, 30))
	waitScreen(t, tm, "Messages (")
	for range 4 { // Messages, Browser, Options, Event log, then the app
		tm.Send(key("right"))
	}
	tm.Send(key("enter"))
	waitScreen(t, tm, "hello app")
	tm.Send(key("e"))
	waitScreen(t, tm, "esc ‹ app")
	tm.Send(tea.KeyMsg{Type: tea.KeyEsc, Alt: true})
	waitScreen(t, tm, "←→↑↓ move · enter open")
	tm.Send(key("q"))
	tm.WaitFinished(t, teatest.WithFinalTimeout(5*time.Second))
}

// TestGoldenBrowserError: on BlackBerry 6.0.0.141, opening a channel whose HTML the gateway
// transcoded shows the browser's error page instead of the page (RIM's knowledge base).
func TestGoldenBrowserError(t *testing.T) {
	h, err := handset.New(handset.Options{PIN: "2100000A", Email: "alice@bbsim.test", Software: "6.0.0.141",
		Now: func() time.Time { return fixed }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	h.UpsertChannel(handset.Channel{ChannelID: "http://news.test/", Title: "News", URL: "http://news.test/"})
	h.PutCache(handset.CacheEntry{URL: "http://news.test/", ContentType: "text/html", Text: "Today", Transcoded: true})
	tm := teatest.NewTestModel(t, New(h, opts()), teatest.WithInitialTermSize(80, 24))
	waitScreen(t, tm, "Messages (")
	tm.Send(key("b"))
	waitScreen(t, tm, "Browser: 1 channels")
	tm.Send(key("enter"))
	waitScreen(t, tm, "fixed in 6.0.0.203")
	tm.Send(key("q"))
	fm := tm.FinalModel(t, teatest.WithFinalTimeout(5*time.Second)).(Model)
	golden.RequireEqual(t, []byte(fm.View()))
}

// TestOpenFetchesOffTheUI: a channel pushed as a URL only is fetched when opened; the fetch
// runs off the UI, which keeps answering keys until the page comes.
func TestOpenFetchesOffTheUI(t *testing.T) {
	h := seeded(t)
	release := make(chan struct{})
	h.SetPageFetcher(func(ctx context.Context, url string) (handset.CacheEntry, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return handset.CacheEntry{}, ctx.Err()
		}
		return handset.CacheEntry{URL: url, ContentType: "text/html", Text: "Fetched over the air"}, nil
	})
	tm := teatest.NewTestModel(t, New(h, opts()), teatest.WithInitialTermSize(100, 30))
	waitScreen(t, tm, "Messages (")
	tm.Send(key("b"))
	waitScreen(t, tm, "Browser: 2 channels")
	for i, c := range h.Channels() {
		if c.Title == "Weather" { // pushed without a page: fetched when opened
			for range i {
				tm.Send(key("down"))
			}
		}
	}
	tm.Send(key("enter"))
	tm.Send(key("?"))
	waitScreen(t, tm, "this help") // the UI answered while the fetch waits
	close(release)
	waitScreen(t, tm, "Fetched over the air")
	tm.Send(key("q"))
	tm.WaitFinished(t, teatest.WithFinalTimeout(5*time.Second))
}
