// Package htmltext renders HTML as text for a handset's screen. The browser shows pushed
// pages with it and the mail client shows HTML mail with it, so both read alike.
package htmltext

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
	"golang.org/x/net/html/charset"
)

// ScreenWidth is the handset screen's width in columns, which pages and mail are
// wrapped to.
const ScreenWidth = 72

const (
	// maxDepth bounds the open elements the renderer tracks; deeper markup still shows
	// its text but adds no structure, so huge nesting costs neither stack nor time.
	maxDepth = 256
	// maxIndent bounds list indentation, so deep lists keep room for text.
	maxIndent = 16
	// minWrap is the narrowest column text is wrapped to.
	minWrap = 16
	// sniffLen is how much of a page is read to find its charset.
	sniffLen = 1024
)

// Options says how a page is rendered. The zero value renders without wrapping, with
// the charset sniffed and links left as written.
type Options struct {
	// Width is the screen's width in columns text is wrapped to (at least 16); 0 or less:
	// no wrapping.
	Width int
	// ContentType is the Content-Type the page came with; its charset wins over the
	// page's own declarations. Empty: none.
	ContentType string
	// Base is the page's URL, against which relative links are resolved. Nil: links are
	// left as written.
	Base *url.URL
}

// Render renders an HTML page as plain text for a terminal screen: headings underlined,
// paragraphs separated by blank lines, lists with "*" or numbers, links numbered "[n]" in
// the text and listed at the end. Scripts, styles and the title are dropped; nesting
// deeper than 256 elements adds no structure. The charset comes from opts.ContentType, a
// byte-order mark or a <meta> declaration, else UTF-8 (windows-1252 when the first KiB is
// not valid UTF-8). It reads r to the end and never fails on bad markup; the error is
// from reading r, and the text read before it is still returned. Nil opts: the zero
// Options.
func Render(r io.Reader, opts *Options) (text string, links []string, err error) {
	if opts == nil {
		opts = &Options{}
	}
	contentType, base, width := opts.ContentType, opts.Base, opts.Width
	// Sniff the charset from the first KiB (BOM, Content-Type, <meta>), as browsers do.
	var prefix []byte
	var rest io.Reader
	if br, ok := r.(*bytes.Reader); ok && br.Len() <= sniffLen {
		// The receiver's whole page is in memory: no copy.
		prefix = make([]byte, br.Len())
		_, _ = br.Read(prefix)
	} else {
		prefix = make([]byte, sniffLen)
		n, err := io.ReadFull(r, prefix)
		prefix = prefix[:n]
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		case err != nil:
			rest = errReader{err}
		default:
			rest = r
		}
	}
	var rd io.Reader = bytes.NewReader(prefix)
	if rest != nil {
		rd = io.MultiReader(rd, rest)
	}
	if !plainUTF8(prefix, contentType) {
		if enc, name, _ := charset.DetermineEncoding(prefix, contentType); name != "utf-8" {
			rd = enc.NewDecoder().Reader(rd)
		}
	} // UTF-8 needs no decoder: invalid bytes become U+FFFD in the text handler
	rn := &renderer{width: width, linkNo: map[string]int{}, base: base}
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
			rn.text(z.Text())
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
			if a == atom.Base && href != "" && rn.base != nil {
				if u, err := rn.base.Parse(href); err == nil {
					rn.base = u
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

	inline  bytes.Buffer // the paragraph being collected (Reset keeps its memory)
	para    []byte       // scratch for wrapping
	marker  string       // list marker for the paragraph's first line
	heading int          // heading level of the paragraph (0: none)

	links  []string
	linkNo map[string]int
	base   *url.URL
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

func (rn *renderer) text(s []byte) {
	if rn.dropNext {
		rn.dropNext = false
		return
	}
	if rn.skip > 0 {
		return
	}
	if !utf8.Valid(s) {
		s = bytes.ToValidUTF8(s, []byte("\uFFFD"))
	}
	if bytes.Contains(s, bom) { // a byte-order mark is not text
		s = bytes.ReplaceAll(s, bom, nil)
	}
	if rn.pre > 0 {
		rn.inline.Write(s)
		return
	}
	// Collapse white space as it comes, so the paragraph never holds runs of it (and
	// "is there text yet?" is answered from its ends, however many cells or items).
	if len(s) == 0 {
		return
	}
	first, _ := utf8.DecodeRune(s)
	last, _ := utf8.DecodeLastRune(s)
	words := 0
	for w := range fields(s) {
		if words > 0 || (unicode.IsSpace(first) && rn.inline.Len() > 0 && !rn.endsInSpace()) {
			rn.inline.WriteByte(' ')
		}
		rn.inline.Write(w)
		words++
	}
	if unicode.IsSpace(last) && rn.inline.Len() > 0 && !rn.endsInSpace() {
		rn.inline.WriteByte(' ')
	}
}

func (rn *renderer) endsInSpace() bool {
	b := rn.inline.Bytes()
	return len(b) > 0 && isSpaceByte(b[len(b)-1])
}

func isSpaceByte(c byte) bool {
	return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f'
}

var bom = []byte("\uFEFF")

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
		if len(bytes.TrimSpace(rn.inline.Bytes())) != 0 {
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
	if rn.base != nil {
		if u, err := rn.base.Parse(href); err == nil {
			href = u.String()
		}
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
	words := rn.inline.Bytes()
	if len(bytes.TrimSpace(words)) == 0 {
		rn.inline.Reset()
		return
	}
	ind := strings.Repeat(" ", rn.indent())
	first := ind + rn.marker
	cont := ind + strings.Repeat(" ", utf8.RuneCountInString(rn.marker))
	rn.marker = ""
	b := bytes.NewBuffer(rn.para[:0])
	b.WriteString(first)
	prefixLen := utf8.RuneCountInString(first)
	contLen := utf8.RuneCountInString(cont)
	lineLen, longest := prefixLen, 0
	avail := 0
	if rn.width > 0 {
		avail = max(rn.width, prefixLen+minWrap)
	}
	for w := range fields(words) {
		wl := len(w)
		if !isASCII(w) {
			wl = utf8.RuneCount(w)
		}
		switch {
		case lineLen == prefixLen:
			b.Write(w)
			lineLen += wl
		case avail > 0 && lineLen+1+wl > avail:
			longest = max(longest, lineLen-prefixLen)
			b.WriteByte('\n')
			b.WriteString(cont)
			b.Write(w)
			lineLen, prefixLen = contLen+wl, contLen
		default:
			b.WriteByte(' ')
			b.Write(w)
			lineLen += 1 + wl
		}
	}
	longest = max(longest, lineLen-prefixLen)
	if rn.heading == 1 || rn.heading == 2 {
		ch := "="
		if rn.heading == 2 {
			ch = "-"
		}
		b.WriteByte('\n')
		b.WriteString(ind)
		b.WriteString(strings.Repeat(ch, longest))
	}
	rn.para = b.Bytes()
	text := b.String()
	rn.inline.Reset()
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

func isASCII(s []byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// fields yields the whitespace-separated words of b, like bytes.Fields without allocating.
func fields(b []byte) func(yield func([]byte) bool) {
	return func(yield func([]byte) bool) {
		i := 0
		for i < len(b) {
			for i < len(b) {
				r, n := rune(b[i]), 1
				if r >= utf8.RuneSelf {
					r, n = utf8.DecodeRune(b[i:])
				}
				if !unicode.IsSpace(r) {
					break
				}
				i += n
			}
			start := i
			for i < len(b) {
				r, n := rune(b[i]), 1
				if r >= utf8.RuneSelf {
					r, n = utf8.DecodeRune(b[i:])
				}
				if unicode.IsSpace(r) {
					break
				}
				i += n
			}
			if i > start && !yield(b[start:i]) {
				return
			}
		}
	}
}

// plainUTF8 reports, cheaply, that a page with no charset parameter, no byte-order mark and
// no <meta> is valid UTF-8. Unlike charset.DetermineEncoding, a page whose first KiB is
// plain ASCII is read as UTF-8, not windows-1252: pushed pages today are UTF-8.
func plainUTF8(prefix []byte, contentType string) bool {
	if strings.Contains(strings.ToLower(contentType), "charset") {
		return false
	}
	if bytes.HasPrefix(prefix, []byte{0xef, 0xbb, 0xbf}) || bytes.HasPrefix(prefix, []byte{0xfe, 0xff}) ||
		bytes.HasPrefix(prefix, []byte{0xff, 0xfe}) {
		return false
	}
	for i := bytes.IndexByte(prefix, '<'); i >= 0; {
		if rest := prefix[i+1:]; len(rest) >= 4 && bytes.EqualFold(rest[:4], []byte("meta")) {
			return false
		}
		j := bytes.IndexByte(prefix[i+1:], '<')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	// A partial rune at the end of a sniffed prefix is not an error.
	for k := 0; k < utf8.UTFMax && len(prefix) > 0; k++ {
		if utf8.Valid(prefix) {
			return true
		}
		if len(prefix) < sniffLen {
			return false
		}
		prefix = prefix[:len(prefix)-1]
	}
	return utf8.Valid(prefix)
}
