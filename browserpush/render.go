package browserpush

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
	"golang.org/x/net/html/charset"
)

const (
	// maxDepth bounds the open elements the renderer tracks; deeper markup still shows
	// its text but adds no structure, so huge nesting costs neither stack nor time.
	maxDepth = 256
	// maxIndent bounds list indentation, so deep lists keep room for text.
	maxIndent = 16
	// minWrap is the narrowest column text is wrapped to.
	minWrap = 16
)

// RenderHTML renders an HTML page as plain text for a terminal screen width columns wide
// (0 or less: no wrapping): headings underlined, paragraphs separated by blank lines,
// lists with "*" or numbers, links numbered "[n]" in the text and listed at the end.
// Scripts, styles and the title are dropped. The charset comes from a byte-order mark or a
// <meta> declaration, else UTF-8. It reads r to the end and never fails on bad markup;
// the error is from reading r.
func RenderHTML(r io.Reader, width int) (text string, links []string, err error) {
	return renderHTML(r, "", width)
}

// renderHTML is RenderHTML with the Content-Type the page came with (its charset wins).
func renderHTML(r io.Reader, contentType string, width int) (string, []string, error) {
	// Sniff the charset from the first KiB (BOM, Content-Type, <meta>), as browsers do.
	prefix := make([]byte, 1024)
	n, err := io.ReadFull(r, prefix)
	prefix = prefix[:n]
	rest := r
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		rest = bytes.NewReader(nil)
	case err != nil:
		rest = errReader{err}
	}
	enc, _, _ := charset.DetermineEncoding(prefix, contentType)
	rd := enc.NewDecoder().Reader(io.MultiReader(bytes.NewReader(prefix), rest))
	rn := &renderer{width: width, linkNo: map[string]int{}}
	z := html.NewTokenizer(rd)
	var readErr error
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			if err := z.Err(); !errors.Is(err, io.EOF) {
				readErr = fmt.Errorf("render html: %w", err)
			}
			break
		}
		switch tt {
		case html.TextToken:
			rn.text(string(z.Text()))
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			a := atom.Lookup(name)
			var href, alt string
			for hasAttr {
				var k, v []byte
				k, v, hasAttr = z.TagAttr()
				switch string(k) {
				case "href":
					href = string(v)
				case "alt":
					alt = string(v)
				}
			}
			rn.start(a, href, alt, tt == html.SelfClosingTagToken)
		case html.EndTagToken:
			name, _ := z.TagName()
			rn.end(atom.Lookup(name))
		}
	}
	return rn.finish(), rn.links, readErr
}

// errReader is a reader that fails with err: the read error after the sniffed prefix.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

type elem struct {
	a    atom.Atom
	href string
}

type list struct {
	ordered bool
	n       int
}

type renderer struct {
	width int
	out   strings.Builder
	nl    int // newlines owed before the next output (only once something was written)

	stack    []elem
	skip     int  // open elements whose text is dropped
	dropNext bool // drop the next text (a raw-text element opened past maxDepth)
	pre      int  // open <pre> elements
	lists    []list

	inline  strings.Builder // the paragraph being collected
	marker  string          // list marker for the paragraph's first line
	heading int             // heading level of the paragraph (0: none)

	links  []string
	linkNo map[string]int
}

var skipped = map[atom.Atom]bool{
	atom.Script: true, atom.Style: true, atom.Title: true, atom.Noscript: true,
	atom.Template: true, atom.Svg: true, atom.Math: true, atom.Iframe: true, atom.Object: true,
	atom.Select: true, atom.Textarea: true, atom.Noembed: true, atom.Noframes: true,
}

var void = map[atom.Atom]bool{
	atom.Area: true, atom.Base: true, atom.Br: true, atom.Col: true, atom.Embed: true, atom.Hr: true,
	atom.Img: true, atom.Input: true, atom.Link: true, atom.Meta: true, atom.Source: true,
	atom.Track: true, atom.Wbr: true, atom.Param: true, atom.Keygen: true,
}

// paragraphs are separated from their neighbours by a blank line; blocks by a line break.
var paragraphs = map[atom.Atom]bool{
	atom.P: true, atom.Blockquote: true, atom.Pre: true, atom.Table: true, atom.Dl: true,
	atom.Figure: true, atom.Form: true, atom.Address: true, atom.H1: true, atom.H2: true,
	atom.H3: true, atom.H4: true, atom.H5: true, atom.H6: true, atom.Ul: true, atom.Ol: true,
}

var blocks = map[atom.Atom]bool{
	atom.Div: true, atom.Li: true, atom.Tr: true, atom.Dt: true, atom.Dd: true, atom.Section: true,
	atom.Article: true, atom.Header: true, atom.Footer: true, atom.Nav: true, atom.Main: true,
	atom.Aside: true, atom.Figcaption: true, atom.Body: true, atom.Center: true, atom.Caption: true,
	atom.Fieldset: true, atom.Legend: true, atom.Details: true, atom.Summary: true,
}

func headingLevel(a atom.Atom) int {
	switch a {
	case atom.H1:
		return 1
	case atom.H2:
		return 2
	case atom.H3:
		return 3
	case atom.H4:
		return 4
	case atom.H5:
		return 5
	case atom.H6:
		return 6
	}
	return 0
}

func (rn *renderer) text(s string) {
	if rn.dropNext {
		rn.dropNext = false
		return
	}
	if rn.skip > 0 {
		return
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.Contains(s, "\uFEFF") { // a byte-order mark is not text
		s = strings.ReplaceAll(s, "\uFEFF", "")
	}
	rn.inline.WriteString(s)
}

func (rn *renderer) start(a atom.Atom, href, alt string, selfClosing bool) {
	if rn.skip > 0 {
		if skipped[a] && !selfClosing && !void[a] && len(rn.stack) < maxDepth {
			rn.stack = append(rn.stack, elem{a: a})
			rn.skip++
		}
		return
	}
	switch {
	case a == atom.Br:
		if rn.pre > 0 {
			rn.inline.WriteByte('\n')
		} else {
			rn.flush()
			rn.need(1)
		}
		return
	case a == atom.Hr:
		rn.block(2)
		rn.write(strings.Repeat("-", min(max(rn.width, minWrap), 40)))
		rn.need(2)
		return
	case a == atom.Img:
		if alt = strings.TrimSpace(alt); alt != "" {
			rn.inline.WriteString(" [" + alt + "] ")
		}
		return
	case a == atom.Td || a == atom.Th:
		if strings.TrimSpace(rn.inline.String()) != "" {
			rn.inline.WriteString(" | ")
		}
	}
	if void[a] || selfClosing {
		return
	}
	if len(rn.stack) >= maxDepth {
		if skipped[a] {
			rn.dropNext = true
		}
		return
	}
	if a == atom.Li {
		rn.closeOpenItem()
	}
	rn.stack = append(rn.stack, elem{a: a, href: href})
	switch {
	case skipped[a]:
		rn.skip++
	case a == atom.Pre:
		rn.block(2)
		rn.pre++
	case a == atom.Ul || a == atom.Ol:
		if len(rn.lists) > 0 {
			rn.block(1)
		} else {
			rn.block(2)
		}
		rn.lists = append(rn.lists, list{ordered: a == atom.Ol})
	case a == atom.Li:
		rn.block(1)
		if n := len(rn.lists); n > 0 {
			l := &rn.lists[n-1]
			l.n++
			if l.ordered {
				rn.marker = strconv.Itoa(l.n) + ". "
			} else {
				rn.marker = "* "
			}
		} else {
			rn.marker = "* "
		}
	case headingLevel(a) > 0:
		rn.block(2)
		rn.heading = headingLevel(a)
	case paragraphs[a]:
		rn.block(2)
	case blocks[a]:
		rn.block(1)
	}
}

// closeOpenItem closes an <li> left open in the current list (HTML lets authors omit </li>).
func (rn *renderer) closeOpenItem() {
	for i := len(rn.stack) - 1; i >= 0; i-- {
		switch rn.stack[i].a {
		case atom.Li:
			rn.popTo(i)
			return
		case atom.Ul, atom.Ol:
			return
		}
	}
}

func (rn *renderer) end(a atom.Atom) {
	for i := len(rn.stack) - 1; i >= 0; i-- {
		if rn.stack[i].a == a {
			rn.popTo(i)
			return
		}
	}
}

// popTo closes the elements from the top of the stack down to index i.
func (rn *renderer) popTo(i int) {
	for len(rn.stack) > i {
		e := rn.stack[len(rn.stack)-1]
		rn.stack = rn.stack[:len(rn.stack)-1]
		rn.close(e)
	}
}

func (rn *renderer) close(e elem) {
	a := e.a
	if skipped[a] {
		rn.skip--
		return
	}
	if rn.skip > 0 {
		return
	}
	switch {
	case a == atom.A:
		if n := rn.link(e.href); n > 0 {
			rn.inline.WriteString("[" + strconv.Itoa(n) + "]")
		}
	case a == atom.Pre:
		rn.flushPre()
		rn.pre--
		rn.need(2)
	case a == atom.Ul || a == atom.Ol:
		rn.flush()
		rn.lists = rn.lists[:len(rn.lists)-1]
		if len(rn.lists) > 0 {
			rn.need(1)
		} else {
			rn.need(2)
		}
	case headingLevel(a) > 0:
		rn.flush()
		rn.heading = 0
		rn.need(2)
	case paragraphs[a]:
		rn.block(2)
	case blocks[a]:
		rn.block(1)
	}
}

// link numbers a link target, reusing the number of one already seen.
func (rn *renderer) link(href string) int {
	href = strings.TrimSpace(href)
	if href == "" || strings.HasPrefix(href, "#") || strings.HasPrefix(strings.ToLower(href), "javascript:") {
		return 0
	}
	if n, ok := rn.linkNo[href]; ok {
		return n
	}
	rn.links = append(rn.links, href)
	rn.linkNo[href] = len(rn.links)
	return len(rn.links)
}

// block ends the current paragraph and owes n newlines.
func (rn *renderer) block(n int) {
	rn.flush()
	rn.need(n)
}

func (rn *renderer) need(n int) {
	if rn.out.Len() > 0 && n > rn.nl {
		rn.nl = n
	}
}

// write puts one line (or a block of lines) of output after the owed newlines.
func (rn *renderer) write(s string) {
	if rn.out.Len() > 0 {
		rn.out.WriteString(strings.Repeat("\n", max(rn.nl, 1)))
	}
	rn.nl = 0
	rn.out.WriteString(s)
}

func (rn *renderer) indent() int {
	return min(2*max(len(rn.lists)-1, 0), maxIndent)
}

// flush wraps the collected paragraph into lines.
func (rn *renderer) flush() {
	if rn.pre > 0 {
		return
	}
	words := strings.Fields(rn.inline.String())
	rn.inline.Reset()
	if len(words) == 0 {
		return
	}
	ind := strings.Repeat(" ", rn.indent())
	first := ind + rn.marker
	cont := ind + strings.Repeat(" ", utf8.RuneCountInString(rn.marker))
	rn.marker = ""
	var lines []string
	line, lineLen := first, utf8.RuneCountInString(first)
	prefixLen := lineLen
	avail := 0
	if rn.width > 0 {
		avail = max(rn.width, prefixLen+minWrap)
	}
	for _, w := range words {
		wl := utf8.RuneCountInString(w)
		switch {
		case lineLen == prefixLen:
			line += w
			lineLen += wl
		case avail > 0 && lineLen+1+wl > avail:
			lines = append(lines, line)
			line, lineLen = cont+w, utf8.RuneCountInString(cont)+wl
			prefixLen = utf8.RuneCountInString(cont)
		default:
			line += " " + w
			lineLen += 1 + wl
		}
	}
	lines = append(lines, line)
	longest := 0
	for _, l := range lines {
		longest = max(longest, utf8.RuneCountInString(strings.TrimLeft(l, " ")))
	}
	text := strings.Join(lines, "\n")
	switch rn.heading {
	case 1:
		text += "\n" + ind + strings.Repeat("=", longest)
	case 2:
		text += "\n" + ind + strings.Repeat("-", longest)
	}
	rn.write(text)
	rn.need(1)
}

// flushPre writes preformatted text as it is, indented like its surroundings.
func (rn *renderer) flushPre() {
	s := strings.Trim(rn.inline.String(), "\n")
	rn.inline.Reset()
	if strings.TrimSpace(s) == "" {
		return
	}
	ind := strings.Repeat(" ", rn.indent())
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(ind+l, " \t")
	}
	rn.write(strings.Join(lines, "\n"))
	rn.need(1)
}

func (rn *renderer) finish() string {
	if rn.pre > 0 {
		rn.flushPre()
		rn.pre = 0
	}
	rn.flush()
	if len(rn.links) > 0 {
		rn.need(2)
		var b strings.Builder
		b.WriteString("References")
		for i, l := range rn.links {
			fmt.Fprintf(&b, "\n[%d] %s", i+1, l)
		}
		rn.write(b.String())
	}
	return rn.out.String()
}
