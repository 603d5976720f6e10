// Package ui draws the handset in the terminal with bubbletea and lipgloss: a handset
// frame with a status bar (signal, mail connection, unread count, push registration,
// clock), a home screen of icons (messages, browser, options, event log, push apps and
// one icon per browser channel, unread or read), the message list, message and browser
// views, the event log and the options screen. It follows the handset's events live.
package ui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/viewport"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"

	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/internal/termtext"
)

// Server is a server shown on the Options screen.
type Server struct{ Name, Addr string }

// Options configure the UI.
type Options struct {
	// Servers are listed on the Options screen.
	Servers []Server
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger. Default: discard.
	Logger *slog.Logger
	// SMTP and PushURL are this run's SMTP server and push gateway, named in the commands
	// the empty screens suggest so that they work as printed. Default 127.0.0.1:2525 and
	// http://127.0.0.1:8080.
	SMTP, PushURL string
}

// Screens.
const (
	ScreenHome     = "home"
	ScreenMessages = "messages"
	ScreenMessage  = "message"
	ScreenBrowser  = "browser"
	ScreenPage     = "page"
	ScreenEvents   = "events"
	ScreenOptions  = "options"
	ScreenHelp     = "help"
	ScreenApp      = "app"
)

// bannerFor is how long a notification banner stays.
const bannerFor = 4 * time.Second

// Model is the bubbletea model of the handset.
type Model struct {
	h    *handset.Handset
	opts Options

	width, height int
	screen        string
	back          []string // screens to return to with esc

	homeSel, listSel, chanSel, eventTop int
	vp                                  viewport.Model
	title                               string // of the message or page shown
	appID                               string // of the push app shown

	banner      string
	bannerUntil time.Time
	lastSeq     uint64

	ctx    context.Context
	cancel context.CancelFunc
}

// New builds the model for a handset.
func New(h *handset.Handset, opts Options) Model {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SMTP == "" {
		opts.SMTP = "127.0.0.1:2525"
	}
	if opts.PushURL == "" {
		opts.PushURL = "http://127.0.0.1:8080"
	}
	m := Model{h: h, opts: opts, width: 80, height: 24, screen: ScreenHome}
	if ev := h.Events(0); len(ev) > 0 {
		m.lastSeq = ev[len(ev)-1].Seq
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.vp = viewport.New(76, 16)
	return m
}

// Run draws the handset on a terminal until q, ctrl-c or the end of ctx.
func Run(ctx context.Context, h *handset.Handset, opts Options, in io.Reader, out io.Writer) error {
	m := New(h, opts)
	defer m.cancel()
	p := tea.NewProgram(m, tea.WithInput(in), tea.WithOutput(out), tea.WithAltScreen(),
		tea.WithMouseCellMotion(), tea.WithContext(ctx))
	_, err := p.Run()
	if err != nil && (errors.Is(err, tea.ErrProgramKilled) || errors.Is(err, context.Canceled)) && ctx.Err() != nil {
		return nil
	}
	return err
}

// Render draws one screen at the given size, through the same code as the live view.
// The message, page and browser screens show the newest message and channel without
// marking them read.
func Render(h *handset.Handset, opts Options, screen string, width, height int) string {
	m := New(h, opts)
	defer m.cancel()
	m.width, m.height = width, height
	m.resize()
	switch screen {
	case ScreenMessage:
		if msgs := h.Messages(); len(msgs) > 0 {
			m.showText(msgs[0].Subject, messageText(msgs[0]), nil)
		}
	case ScreenPage:
		if chs := h.Channels(); len(chs) > 0 {
			page, _ := h.CachedPage(chs[0].URL)
			m.showText(m.pageTitle(chs[0].Title), page.Text, page.Links)
		}
	case ScreenApp:
		if apps := h.Apps(); len(apps) > 0 {
			m.appID = apps[0].ID
		}
	}
	m.screen = screen
	return m.View()
}

type eventsMsg []handset.Event
type tickMsg time.Time

func (m Model) waitEvents() tea.Cmd {
	after, ctx, h := m.lastSeq, m.ctx, m.h
	return func() tea.Msg {
		ev, err := h.WaitEvents(ctx, after)
		if err != nil {
			return nil
		}
		return eventsMsg(ev)
	}
}

func tick() tea.Cmd {
	return tea.Tick(time.Second, func(t time.Time) tea.Msg { return tickMsg(t) })
}

// Init starts following the handset's events and the clock.
func (m Model) Init() tea.Cmd {
	return tea.Batch(m.waitEvents(), tick())
}

// Update handles keys, mouse, resizes, events and the clock.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.resize()
		return m, nil
	case eventsMsg:
		for _, e := range msg {
			m.lastSeq = e.Seq
			switch e.Kind {
			case handset.EventMailNew:
				m.setBanner("New mail: " + e.Fields["subject"])
			case handset.EventPushAlert:
				m.setBanner("Alert: " + e.Text)
			case handset.EventPushMessage:
				m.setBanner(e.Text)
			}
		}
		return m, m.waitEvents()
	case tickMsg:
		return m, tick()
	case channelOpened:
		m.showChannel(msg.c, msg.page, msg.err)
		return m, nil
	case messageOpened:
		m.showMessage(msg.msg, msg.err)
		return m, nil
	case tea.MouseMsg:
		return m.mouse(msg)
	case tea.KeyMsg:
		return m.key(msg)
	}
	if m.screen == ScreenMessage || m.screen == ScreenPage {
		var cmd tea.Cmd
		m.vp, cmd = m.vp.Update(msg)
		return m, cmd
	}
	return m, nil
}

func (m *Model) setBanner(s string) {
	m.banner = s
	m.bannerUntil = m.opts.Now().Add(bannerFor)
}

// bodySize is the size inside the frame, between the status bar and the help bar.
func (m Model) bodySize() (w, h int) {
	w = max(m.width-2, 10)
	h = max(m.height-5, 3)
	return
}

func (m *Model) resize() {
	w, h := m.bodySize()
	m.vp.Width, m.vp.Height = w, max(h-1, 1)
}

func (m *Model) go_(screen string) {
	if m.screen != screen {
		m.back = append(m.back, m.screen)
	}
	m.screen = screen
}

func (m *Model) goBack() {
	if n := len(m.back); n > 0 {
		m.screen = m.back[n-1]
		m.back = m.back[:n-1]
		return
	}
	m.screen = ScreenHome
}

func (m *Model) showText(title, text string, links []string) {
	m.title = title
	var b strings.Builder
	b.WriteString(text)
	if len(links) > 0 {
		b.WriteString("\n\nLinks:\n")
		for i, l := range links {
			fmt.Fprintf(&b, "[%d] %s\n", i+1, l)
		}
	}
	w, _ := m.bodySize()
	m.vp.SetContent(wrap(b.String(), w))
	m.vp.GotoTop()
}

func wrap(s string, w int) string {
	return ansi.Wrap(s, w, " ")
}

func messageText(msg handset.Message) string {
	var b strings.Builder
	if msg.From != "" {
		fmt.Fprintf(&b, "From: %s\n", msg.From)
	}
	if msg.URL != "" {
		fmt.Fprintf(&b, "URL:  %s\n", msg.URL)
	}
	fmt.Fprintf(&b, "Date: %s\n\n", msg.ReceivedAt.Local().Format("Mon 2 Jan 15:04"))
	if msg.Text != "" {
		b.WriteString(msg.Text)
	} else if msg.ContentType != "" {
		fmt.Fprintf(&b, "(%s, %d bytes)", msg.ContentType, msg.Size)
	}
	if len(msg.Links) > 0 {
		b.WriteString("\n\nLinks:\n")
		for i, l := range msg.Links {
			fmt.Fprintf(&b, "[%d] %s\n", i+1, l)
		}
	}
	if len(msg.Attachments) > 0 {
		fmt.Fprintf(&b, "\n\nAttachments (%d):\n", len(msg.Attachments))
		for _, a := range msg.Attachments {
			name := a.Name
			if name == "" {
				name = "(no name)"
			}
			fmt.Fprintf(&b, "  %s  %s, %s\n", name, a.ContentType, sizeText(a.Size))
		}
	}
	return b.String()
}

// sizeText is a size as the handset shows it: bytes, then KB and MB (of 1,024).
func sizeText(n int) string {
	switch {
	case n < 1024:
		return fmt.Sprintf("%d bytes", n)
	case n < 1024*1024:
		return fmt.Sprintf("%.1f KB", float64(n)/1024)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/(1024*1024))
}

// Styles.
var (
	frameStyle  = lipgloss.NewStyle().Border(lipgloss.RoundedBorder()).BorderForeground(lipgloss.Color("240"))
	statusStyle = lipgloss.NewStyle().Bold(true)
	dimStyle    = lipgloss.NewStyle().Foreground(lipgloss.Color("244"))
	boldStyle   = lipgloss.NewStyle().Bold(true)
	selStyle    = lipgloss.NewStyle().Reverse(true)
	bannerStyle = lipgloss.NewStyle().Foreground(lipgloss.Color("0")).Background(lipgloss.Color("214"))
	warnStyle   = lipgloss.NewStyle().Foreground(lipgloss.Color("196"))
	okStyle     = lipgloss.NewStyle().Foreground(lipgloss.Color("42"))
)

// View draws the handset.
func (m Model) View() string {
	w, h := m.bodySize()
	var body string
	switch m.screen {
	case ScreenMessages:
		body = m.viewMessages(w, h)
	case ScreenMessage, ScreenPage:
		body = m.viewText(w, h)
	case ScreenBrowser:
		body = m.viewBrowser(w, h)
	case ScreenEvents:
		body = m.viewEvents(w, h)
	case ScreenOptions:
		body = m.viewOptions(w, h)
	case ScreenHelp:
		body = m.viewHelp(w, h)
	case ScreenApp:
		body = m.viewApp(w, h)
	default:
		body = m.viewHome(w, h)
	}
	lines := []string{m.statusBar(w), m.bannerLine(w)}
	lines = append(lines, fit(body, w, h)...)
	lines = append(lines, m.helpBar(w))
	// Subjects, titles and pages come from outside: only the screen's own styles may
	// reach the terminal, never an escape sequence of theirs.
	return frameStyle.Render(termtext.KeepStyles(strings.Join(lines, "\n")))
}

// fit cuts or pads s to exactly h lines of at most w cells.
func fit(s string, w, h int) []string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	out := make([]string, h)
	for i := range h {
		l := ""
		if i < len(lines) {
			l = lines[i]
		}
		out[i] = pad(l, w)
	}
	return out
}

// pad truncates l to w cells and pads it with spaces.
func pad(l string, w int) string {
	l = ansi.Truncate(l, w, "…")
	if n := lipgloss.Width(l); n < w {
		l += strings.Repeat(" ", w-n)
	}
	return l
}

// signalBars draws the radio's signal strength, 1 to 4 bars, and its network indicator.
func signalBars(r handset.RadioStatus) string {
	glyphs := []rune("▂▄▆█")
	n := min(max(r.Bars, 1), len(glyphs))
	s := string(glyphs[:n]) + strings.Repeat("·", len(glyphs)-n)
	if r.Network != "" {
		s += " " + r.Network
	}
	return s
}

func (m Model) statusBar(w int) string {
	d := m.h.Device()
	signal := signalBars(d.Radio)
	if d.Coverage != "in" {
		signal = warnStyle.Render("✕ out of coverage")
	}
	mail := mailState(d.Mail, m.opts.Now())
	// What push brought: browser channels, and the push apps registered.
	push := "push: none"
	if n := len(m.h.Channels()); n > 0 || len(d.Apps) > 0 {
		push = fmt.Sprintf("push: %d channel%s", n, plural(n))
		if len(d.Apps) > 0 {
			active := 0
			for _, a := range d.Apps {
				if a.State == handset.AppActive {
					active++
				}
			}
			push += fmt.Sprintf(", %d/%d apps", active, len(d.Apps))
		}
	}
	left := fmt.Sprintf("%s  %s  ✉ %d unread  %s", signal, mail, d.Unread, push)
	clock := m.opts.Now().Local().Format("15:04")
	gap := w - lipgloss.Width(left) - lipgloss.Width(clock)
	if gap < 1 {
		return pad(statusStyle.Render(left), w)
	}
	return statusStyle.Render(left + strings.Repeat(" ", gap) + clock)
}

// mailState is the mail connection as the status bar shows it.
func mailState(s handset.MailStatus, now time.Time) string {
	switch s.State {
	case handset.MailIdling:
		return okStyle.Render("mail idling")
	case handset.MailPolling:
		return "mail polling (" + s.Protocol + ")"
	case handset.MailLockedOut:
		return warnStyle.Render(fmt.Sprintf("mail locked out, retry in %ds", secondsUntil(s.RetryAt, now)))
	case handset.MailBackoff:
		return warnStyle.Render(fmt.Sprintf("mail reconnecting in %ds", secondsUntil(s.RetryAt, now)))
	case handset.MailAuthFailed:
		return warnStyle.Render("mail login refused")
	case handset.MailConnecting:
		return "mail connecting"
	case handset.MailDisconnected:
		return "mail disconnected"
	case "", handset.MailOff:
		return dimStyle.Render("mail off")
	}
	return "mail " + string(s.State)
}

func secondsUntil(t, now time.Time) int {
	d := t.Sub(now)
	if d <= 0 {
		return 0
	}
	return int((d + time.Second - 1) / time.Second)
}

func (m Model) bannerLine(w int) string {
	if m.banner == "" || m.opts.Now().After(m.bannerUntil) {
		return strings.Repeat(" ", w)
	}
	return bannerStyle.Render(pad("» "+m.banner, w))
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// screenNames are the screens as the footer names them.
var screenNames = map[string]string{
	ScreenHome: "home", ScreenMessages: "messages", ScreenMessage: "message", ScreenBrowser: "browser",
	ScreenPage: "page", ScreenEvents: "event log", ScreenOptions: "options", ScreenHelp: "help", ScreenApp: "app",
}

// helpBar is the footer: the keys of this screen, as many as fit, and always where esc
// goes, "? help" and "q quit".
func (m Model) helpBar(w int) string {
	var keys []string
	switch m.screen {
	case ScreenHome:
		keys = []string{"←→↑↓ move", "enter open", "m messages", "b browser", "e events", "c coverage", "o options"}
	case ScreenMessages, ScreenBrowser:
		keys = []string{"↑↓ move", "enter open", "m messages", "b browser", "e events", "c coverage"}
	case ScreenMessage, ScreenPage, ScreenEvents:
		keys = []string{"↑↓ scroll", "m messages", "b browser", "e events", "c coverage"}
	default:
		keys = []string{"m messages", "b browser", "e events", "c coverage"}
	}
	var first []string
	if m.screen != ScreenHome {
		back := ScreenHome
		if n := len(m.back); n > 0 {
			back = m.back[n-1]
		}
		first = append(first, "esc ‹ "+screenNames[back])
	}
	last := []string{"? help", "q quit"}
	const sep = " · "
	var out []string
	for i := len(keys); i >= 0; i-- {
		out = append(append(append([]string{}, first...), keys[:i]...), last...)
		if lipgloss.Width(strings.Join(out, sep)) <= w {
			break
		}
	}
	return dimStyle.Render(pad(strings.Join(out, sep), w))
}
