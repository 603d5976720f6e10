package ui

import (
	"fmt"
	"strings"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"github.com/bbsim/bbsim/handset"
)

// tile is one icon of the home screen.
type tile struct {
	label  string
	icon   []string // lines of the icon, 6 cells wide
	action func(m *Model) tea.Cmd
}

const (
	tileW = 18 // cells per tile, margins included
	tileH = 5  // lines per tile: 3 of icon, 1 label, 1 gap
)

// tiles lists the home screen's icons: the built-ins, the push apps, the channels.
func (m Model) tiles() []tile {
	d := m.h.Device()
	ts := []tile{
		{label: fmt.Sprintf("Messages (%d)", d.Unread), icon: glyph("✉", d.Unread > 0), action: func(m *Model) tea.Cmd { m.listSel = 0; m.go_(ScreenMessages); return nil }},
		{label: "Browser", icon: glyph("◎", false), action: func(m *Model) tea.Cmd { m.chanSel = 0; m.go_(ScreenBrowser); return nil }},
		{label: "Options", icon: glyph("◆", false), action: func(m *Model) tea.Cmd { m.go_(ScreenOptions); return nil }},
		{label: "Event log", icon: glyph("≡", false), action: func(m *Model) tea.Cmd { m.eventTop = -1; m.go_(ScreenEvents); return nil }},
	}
	for _, a := range d.Apps {
		id := a.ID
		ts = append(ts, tile{label: fmt.Sprintf("%s: %s", a.ID, a.State), icon: glyph("▣", len(a.Pushes) > 0),
			action: func(m *Model) tea.Cmd { m.appID = id; m.go_(ScreenApp); return nil }})
	}
	for _, c := range m.h.Channels() {
		c := c
		ts = append(ts, tile{label: c.Title, icon: channelIcon(c), action: func(m *Model) tea.Cmd {
			return m.openChannel(c.ID)
		}})
	}
	return ts
}

// glyph draws a built-in icon; a dot marks something new.
func glyph(g string, fresh bool) []string {
	mark := " "
	if fresh {
		mark = "•"
	}
	return []string{"┌────┐", "│ " + g + " " + mark + "│", "└────┘"}
}

func (m Model) gridCols(w int) int { return max(w/tileW, 1) }

func (m Model) viewHome(w, h int) string {
	ts := m.tiles()
	cols := m.gridCols(w)
	rows := (len(ts) + cols - 1) / cols
	sel := min(m.homeSel, len(ts)-1)
	// Scroll so the selected row shows.
	visible := max(h/tileH, 1)
	first := 0
	if r := sel / cols; r >= visible {
		first = r - visible + 1
	}
	var out []string
	for r := first; r < rows && r < first+visible; r++ {
		block := make([]string, tileH)
		for c := 0; c < cols; c++ {
			i := r*cols + c
			if i >= len(ts) {
				break
			}
			cell := renderTile(ts[i], i == sel)
			for j := range tileH {
				block[j] += cell[j]
			}
		}
		out = append(out, block...)
	}
	return strings.Join(out, "\n")
}

func renderTile(t tile, selected bool) []string {
	lines := make([]string, tileH)
	for j := range 3 {
		icon := ""
		if j < len(t.icon) {
			icon = t.icon[j]
		}
		lines[j] = center(icon, tileW)
	}
	label := t.label
	if lipgloss.Width(label) > tileW-4 {
		label = pad(label, tileW-4)
		label = strings.TrimRight(label, " ")
	}
	if selected {
		lines[3] = center("›"+label+"‹", tileW)
		lines[3] = strings.Replace(lines[3], "›"+label+"‹", "›"+selStyle.Render(label)+"‹", 1)
	} else {
		lines[3] = center(label, tileW)
	}
	lines[4] = strings.Repeat(" ", tileW)
	return lines
}

func center(s string, w int) string {
	n := lipgloss.Width(s)
	if n >= w {
		return pad(s, w)
	}
	left := (w - n) / 2
	return strings.Repeat(" ", left) + s + strings.Repeat(" ", w-n-left)
}

func (m Model) viewMessages(w, h int) string {
	msgs := m.h.Messages()
	var b strings.Builder
	b.WriteString(boldStyle.Render(fmt.Sprintf("Messages (%d)", len(msgs))) + "\n")
	if len(msgs) == 0 {
		b.WriteString(dimStyle.Render("No messages yet. Send one from a shell:") + "\n\n")
		b.WriteString(command(fmt.Sprintf("bbsim send --smtp %s --to %s --subject Hello", m.opts.SMTP, m.h.Email()), w))
		return b.String()
	}
	sel := min(m.listSel, len(msgs)-1)
	first := max(0, sel-(h-2))
	for i := first; i < len(msgs) && i-first < h-1; i++ {
		msg := msgs[i]
		from := msg.From
		if msg.Kind == handset.KindBrowser {
			from = "⊕ " + from
		}
		when := msg.ReceivedAt.Local().Format("Jan 2 15:04")
		fromW := min(24, w/3)
		row := fmt.Sprintf("%s %s  %s", pad(from, fromW), pad(msg.Subject, max(w-fromW-19, 5)), when)
		marker := "  "
		if i == sel {
			marker = "› "
		}
		if !msg.Read {
			row = boldStyle.Render(row)
		}
		if i == sel {
			row = selStyle.Render(row)
		}
		b.WriteString(marker + row + "\n")
	}
	return b.String()
}

func (m Model) viewText(w, h int) string {
	title := boldStyle.Render(pad(m.title, w-8)) + dimStyle.Render(fmt.Sprintf(" %3.0f%%", m.vp.ScrollPercent()*100))
	return title + "\n" + m.vp.View()
}

func (m Model) viewBrowser(w, h int) string {
	chs := m.h.Channels()
	var b strings.Builder
	b.WriteString(boldStyle.Render(fmt.Sprintf("Browser: %d channels, %d cached pages", len(chs), len(m.h.Cache()))) + "\n")
	if len(chs) == 0 {
		b.WriteString(dimStyle.Render("No channels. Push one from a shell:") + "\n\n")
		b.WriteString(command(fmt.Sprintf("bbsim push --gateway %s --to %s --type channel --title News --channel-id http://example.test/news --file /dev/null",
			m.opts.PushURL, m.h.PIN()), w))
		return b.String()
	}
	sel := min(m.chanSel, len(chs)-1)
	for i, c := range chs {
		if i >= h-1 {
			break
		}
		state := "unread"
		if c.Read {
			state = "read"
		}
		icons := "icons loaded"
		if !c.IconsLoaded {
			icons = "default icons"
		}
		row := fmt.Sprintf("%s  %-6s  %s  %s", pad(c.Title, 20), state, pad(c.URL, max(w-50, 10)), icons)
		if !c.Read {
			row = boldStyle.Render(row)
		}
		marker := "  "
		if i == sel {
			marker = "› "
			row = selStyle.Render(row)
		}
		b.WriteString(marker + row + "\n")
	}
	return b.String()
}

func (m Model) viewEvents(w, h int) string {
	ev := m.h.Events(0)
	var b strings.Builder
	b.WriteString(boldStyle.Render(fmt.Sprintf("Event log (%d)", len(ev))) + "\n")
	n := h - 1
	top := m.eventTop
	if top < 0 || top > len(ev)-n {
		top = max(len(ev)-n, 0) // follow the newest
	}
	for i := top; i < len(ev) && i < top+n; i++ {
		e := ev[i]
		fmt.Fprintf(&b, "%s %-16s %s\n", e.At.Local().Format("15:04:05.000"), e.Kind, e.Text)
	}
	return b.String()
}

func (m Model) viewOptions(w, h int) string {
	d := m.h.Device()
	var b strings.Builder
	b.WriteString(boldStyle.Render("Options") + "\n\n")
	cov := "in coverage"
	if d.Coverage != "in" {
		cov = "out of coverage"
	}
	fmt.Fprintf(&b, "Coverage   %s   (c toggles)\n", cov)
	if r := d.Radio; r.Profile != "off" || r.Schedule != "" {
		fmt.Fprintf(&b, "Radio      %s, %d dropped", r.Profile, r.Drops)
		if r.Schedule != "" {
			fmt.Fprintf(&b, ", schedule %q", r.Schedule)
		}
		fmt.Fprintf(&b, " (seed %d)\n", r.Seed)
	}
	fmt.Fprintf(&b, "PIN        %s\n", d.PIN)
	fmt.Fprintf(&b, "E-mail     %s\n", d.Email)
	fmt.Fprintf(&b, "Software   %s (%s browser)\n", d.Software.Version, d.Software.Browser)
	mail := string(d.Mail.State)
	if d.Mail.Protocol != "" {
		mail += " over " + d.Mail.Protocol
	}
	fmt.Fprintf(&b, "Mail       %s %s, %d reconnects\n", mail, d.Mail.Server, d.Mail.Reconnects)
	if ld := d.Mail.LastDisconnect; ld != nil {
		fmt.Fprintf(&b, "Last drop  %s (%s)\n", ld.Reason, ld.At.Local().Format("15:04:05"))
	}
	for _, a := range d.Apps {
		fmt.Fprintf(&b, "Push app   %s on port %d: %s", a.ID, a.Port, a.State)
		if a.LastRC != 0 {
			fmt.Fprintf(&b, " (rc %d %s)", a.LastRC, a.Reason)
		}
		b.WriteString("\n")
	}
	if len(m.opts.Servers) > 0 {
		b.WriteString("\nServers\n")
		for _, s := range m.opts.Servers {
			fmt.Fprintf(&b, "  %-9s %s\n", s.Name, s.Addr)
		}
	}
	return b.String()
}

// command lays out a shell command to fit w cells: broken between words, each line but
// the last ending in " \\", so that it can be typed (or pasted) as shown.
func command(cmd string, w int) string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(cmd) {
		switch {
		case line == "":
			line = word
		case lipgloss.Width(line+" "+word+" \\") > w:
			lines = append(lines, line+" \\")
			line = "  " + word
		default:
			line += " " + word
		}
	}
	return strings.Join(append(lines, line), "\n")
}

// viewApp shows one push application: its full name, port, registration and pushes.
func (m Model) viewApp(w, h int) string {
	a, err := m.h.App(m.appID)
	if err != nil {
		return dimStyle.Render("No push application " + m.appID)
	}
	var b strings.Builder
	b.WriteString(boldStyle.Render(a.ID) + "\n\n")
	fmt.Fprintf(&b, "Port       %d\n", a.Port)
	fmt.Fprintf(&b, "State      %s (wants %s)\n", a.State, a.Want)
	if a.LastRC != 0 || a.Reason != "" {
		fmt.Fprintf(&b, "Last rc    %d %s\n", a.LastRC, a.Reason)
	}
	if a.CPURL != "" {
		fmt.Fprintf(&b, "Provider   %s\n", a.CPURL)
	}
	fmt.Fprintf(&b, "\nPushes (%d)\n", len(a.Pushes))
	if len(a.Pushes) == 0 {
		b.WriteString(dimStyle.Render(fmt.Sprintf("None yet. Push to port %d with --port %d.", a.Port, a.Port)))
	}
	for i := len(a.Pushes) - 1; i >= 0 && len(a.Pushes)-i <= h-8; i-- {
		p := a.Pushes[i]
		fmt.Fprintf(&b, "%s  %-24s %s\n", p.ReceivedAt.Local().Format("Jan 2 15:04:05"), pad(p.ContentType, 24), oneLine(p.Body))
	}
	return b.String()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func (m Model) viewHelp(w, h int) string {
	return boldStyle.Render("Keys") + `

  ↑ ↓ ← →  or  h j k l   move
  enter                  open
  esc                    back (the footer names where to)
  m                      messages
  b                      browser channels
  e                      event log
  o                      options
  c                      coverage on / off
  ?                      this help
  q, ctrl-c              quit

A click selects and opens where the terminal reports the mouse.`
}

// channelOpened and messageOpened are what opening a channel or a message gave. Opening
// runs as a command, off the UI's Update: a page that was pushed as a URL only is fetched
// over the network, which may take long.
type channelOpened struct {
	c    handset.Channel
	page handset.CacheEntry
	err  error
}

type messageOpened struct {
	msg handset.Message
	err error
}

func (m *Model) openChannel(id string) tea.Cmd {
	h := m.h
	return func() tea.Msg {
		c, page, err := h.OpenChannel(id)
		return channelOpened{c, page, err}
	}
}

func (m *Model) openMessage(id string) tea.Cmd {
	h := m.h
	return func() tea.Msg {
		msg, err := h.OpenMessage(id)
		return messageOpened{msg, err}
	}
}

// showChannel shows an opened channel's page, or the browser's error.
func (m *Model) showChannel(c handset.Channel, page handset.CacheEntry, err error) {
	if err != nil && c.ID != "" {
		m.showBrowserError(c.Title, err)
		return
	}
	if err != nil {
		m.setBanner(err.Error())
		return
	}
	text := page.Text
	if text == "" && len(page.Body) == 0 {
		text = "(the page is not in the cache)"
	} else if text == "" {
		text = fmt.Sprintf("(%s, %d bytes)", page.ContentType, len(page.Body))
	}
	m.showText(m.pageTitle(c.Title), text+m.pageImages(page), page.Links)
	m.go_(ScreenPage)
}

// showBrowserError shows the browser, opened on the page titled title, with why it
// cannot display the page.
func (m *Model) showBrowserError(title string, err error) {
	m.showText(m.pageTitle(title), "Error\n\n"+err.Error(), nil)
	m.go_(ScreenPage)
}

// pageTitle is a browser page's title line: the page's title and the browser showing it
// (WebKit from device software 6.0, else the BlackBerry Browser).
func (m *Model) pageTitle(title string) string {
	return title + " · " + m.h.Software().Browser()
}

// pageImages draws the images pushed with a page like channel icons (half blocks) where
// the terminal has colour; elsewhere the page's text already lists them.
func (m *Model) pageImages(page handset.CacheEntry) string {
	if len(page.Parts) == 0 || lipgloss.ColorProfile() == termenv.Ascii {
		return ""
	}
	var b strings.Builder
	for _, u := range page.Parts {
		e, ok := m.h.CachedPage(u)
		if !ok {
			continue
		}
		lines, ok := halfBlocks(e.Body)
		if !ok {
			continue
		}
		b.WriteString("\n" + u + "\n" + strings.Join(lines, "\n") + "\n")
	}
	return b.String()
}

// showMessage shows an opened message, or the browser's error for a browser message.
func (m *Model) showMessage(msg handset.Message, err error) {
	if err != nil && msg.ID != "" {
		m.showBrowserError(msg.Subject, err)
		return
	}
	if err != nil {
		m.setBanner(err.Error())
		return
	}
	title := msg.Subject
	if msg.Kind == handset.KindBrowser {
		title = m.pageTitle(title)
	}
	m.showText(title, messageText(msg), nil)
	m.go_(ScreenMessage)
}

func (m Model) key(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	switch k.String() {
	case "ctrl+c", "q":
		m.cancel()
		return m, tea.Quit
	case "esc", "backspace":
		m.goBack()
		return m, nil
	case "alt+esc":
		// Two esc presses in quick succession arrive as one alt+esc: go back twice.
		m.goBack()
		m.goBack()
		return m, nil
	case "?":
		m.go_(ScreenHelp)
		return m, nil
	case "m":
		m.listSel = 0
		m.go_(ScreenMessages)
		return m, nil
	case "b":
		m.chanSel = 0
		m.go_(ScreenBrowser)
		return m, nil
	case "e":
		m.eventTop = -1
		m.go_(ScreenEvents)
		return m, nil
	case "o":
		m.go_(ScreenOptions)
		return m, nil
	case "c":
		in, _ := m.h.Coverage()
		m.h.SetCoverage(!in)
		return m, nil
	}
	switch m.screen {
	case ScreenHome:
		ts := m.tiles()
		cols := m.gridCols(m.width - 2)
		switch k.String() {
		case "left", "h":
			m.homeSel = max(m.homeSel-1, 0)
		case "right", "l":
			m.homeSel = min(m.homeSel+1, len(ts)-1)
		case "up", "k":
			if m.homeSel-cols >= 0 {
				m.homeSel -= cols
			}
		case "down", "j":
			m.homeSel = min(m.homeSel+cols, len(ts)-1)
		case "enter":
			if m.homeSel < len(ts) && ts[m.homeSel].action != nil {
				return m, ts[m.homeSel].action(&m)
			}
		}
	case ScreenMessages:
		msgs := m.h.Messages()
		switch k.String() {
		case "up", "k":
			m.listSel = max(m.listSel-1, 0)
		case "down", "j":
			m.listSel = min(m.listSel+1, max(len(msgs)-1, 0))
		case "enter":
			if m.listSel < len(msgs) {
				return m, m.openMessage(msgs[m.listSel].ID)
			}
		}
	case ScreenBrowser:
		chs := m.h.Channels()
		switch k.String() {
		case "up", "k":
			m.chanSel = max(m.chanSel-1, 0)
		case "down", "j":
			m.chanSel = min(m.chanSel+1, max(len(chs)-1, 0))
		case "enter":
			if m.chanSel < len(chs) {
				return m, m.openChannel(chs[m.chanSel].ID)
			}
		}
	case ScreenEvents:
		n := len(m.h.Events(0))
		_, h := m.bodySize()
		if m.eventTop < 0 {
			m.eventTop = max(n-(h-1), 0)
		}
		switch k.String() {
		case "up", "k":
			m.eventTop = max(m.eventTop-1, 0)
		case "down", "j":
			m.eventTop = min(m.eventTop+1, max(n-(h-1), 0))
		}
	case ScreenMessage, ScreenPage:
		var cmd tea.Cmd
		m.vp, cmd = m.vp.Update(k)
		return m, cmd
	}
	return m, nil
}

// mouse selects (and opens) what a left click lands on.
func (m Model) mouse(ev tea.MouseMsg) (tea.Model, tea.Cmd) {
	if ev.Action != tea.MouseActionPress || ev.Button != tea.MouseButtonLeft {
		if m.screen == ScreenMessage || m.screen == ScreenPage {
			var cmd tea.Cmd
			m.vp, cmd = m.vp.Update(ev)
			return m, cmd
		}
		return m, nil
	}
	// The body starts inside the frame, after the status bar and the banner line.
	x, y := ev.X-1, ev.Y-3
	if x < 0 || y < 0 {
		return m, nil
	}
	switch m.screen {
	case ScreenHome:
		ts := m.tiles()
		cols := m.gridCols(m.width - 2)
		i := (y/tileH)*cols + x/tileW
		if x/tileW < cols && i < len(ts) {
			m.homeSel = i
			if ts[i].action != nil {
				return m, ts[i].action(&m)
			}
		}
	case ScreenMessages:
		msgs := m.h.Messages()
		if i := y - 1; i >= 0 && i < len(msgs) {
			m.listSel = i
			return m, m.openMessage(msgs[i].ID)
		}
	case ScreenBrowser:
		chs := m.h.Channels()
		if i := y - 1; i >= 0 && i < len(chs) {
			m.chanSel = i
			return m, m.openChannel(chs[i].ID)
		}
	}
	return m, nil
}
