package bisclient

import (
	"bytes"
	"io"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/charset" // every charset go-message knows, for bodies and headers
	"github.com/emersion/go-message/mail"

	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/internal/htmltext"
)

const (
	// maxText bounds the text kept of one part.
	maxText = 1 << 20
	// maxNesting bounds the MIME nesting followed, so a hostile message costs no stack.
	maxNesting = 32
)

// wordDecoder decodes RFC 2047 words (subjects, names, file names) in every charset
// go-message knows.
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// mailBody is a message as the handset shows it.
type mailBody struct {
	contentType string   // of the first part shown as text
	texts       []string // the parts shown as text, in order
	attachments []handset.Attachment
}

// renderMail turns a raw message into what a BlackBerry showed: its text parts decoded
// from their charset, HTML rendered as the browser renders it, and the other parts listed
// by name and size. Of a multipart/alternative it shows the text/plain version when
// there is one, as BlackBerry devices did, else the HTML one. The text parts of a
// multipart/mixed are shown one after the other, separated by a blank line; parts marked
// as attachments, and parts that are neither text/plain nor text/html, are listed.
func renderMail(raw []byte) (contentType, text string, attachments []handset.Attachment) {
	e, err := message.Read(bytes.NewReader(raw))
	if e == nil {
		// Not even a header: show the bytes as text.
		return "text/plain", validText(raw), nil
	}
	var b mailBody
	b.walk(e, err, 0)
	if b.contentType == "" {
		b.contentType = "text/plain"
	}
	return b.contentType, strings.Join(b.texts, "\n\n"), b.attachments
}

// walk adds entity e, read with error err (an unknown charset or transfer encoding), to b.
func (b *mailBody) walk(e *message.Entity, err error, depth int) {
	mt, params, _ := e.Header.ContentType()
	mt = strings.ToLower(mt)
	if mr := e.MultipartReader(); mr != nil {
		if depth >= maxNesting {
			return
		}
		if mt == "multipart/alternative" {
			b.alternative(mr, depth)
			return
		}
		for {
			p, err := mr.NextPart()
			if p == nil {
				return // the end, or a part too broken to read
			}
			b.walk(p, err, depth+1)
		}
	}
	disp, _, _ := e.Header.ContentDisposition()
	if !strings.EqualFold(disp, "attachment") && (mt == "text/plain" || mt == "text/html") {
		b.addText(e, err, mt, params)
		return
	}
	ah := mail.AttachmentHeader{Header: e.Header}
	name, _ := ah.Filename()
	if d, err := wordDecoder.DecodeHeader(name); err == nil {
		name = d
	}
	n, _ := io.Copy(io.Discard, e.Body)
	b.attachments = append(b.attachments, handset.Attachment{Name: name, ContentType: mt, Size: int(n)})
}

// addText adds a text/plain or text/html part. go-message has already decoded it to
// UTF-8 unless its charset is unknown (err), in which case the bytes are shown as they
// are, and HTML gets to find its charset itself.
func (b *mailBody) addText(e *message.Entity, err error, mt string, params map[string]string) {
	raw, _ := io.ReadAll(io.LimitReader(e.Body, maxText))
	text := ""
	if mt == "text/html" {
		ct := "text/html; charset=utf-8"
		if message.IsUnknownCharset(err) {
			ct = mime.FormatMediaType(mt, params)
		}
		// The links are listed at the end of the text, as references.
		text, _, _ = htmltext.Render(bytes.NewReader(raw), &htmltext.Options{Width: htmltext.ScreenWidth, ContentType: ct})
	} else {
		text = strings.TrimRight(strings.ReplaceAll(validText(raw), "\r\n", "\n"), "\n")
	}
	if b.contentType == "" {
		b.contentType = mt
	}
	b.texts = append(b.texts, text)
}

// alternative adds the best version of a multipart/alternative to b: text/plain, else
// text/html, else the last one (the sender's preferred, RFC 2046 §5.1.4).
func (b *mailBody) alternative(mr message.MultipartReader, depth int) {
	var versions []mailBody
	for {
		p, err := mr.NextPart()
		if p == nil {
			break
		}
		var v mailBody
		v.walk(p, err, depth+1)
		versions = append(versions, v)
	}
	if len(versions) == 0 {
		return
	}
	best := len(versions) - 1
pick:
	for _, want := range []string{"text/plain", "text/html"} {
		for i, v := range versions {
			if v.contentType == want {
				best = i
				break pick
			}
		}
	}
	v := versions[best]
	if b.contentType == "" {
		b.contentType = v.contentType
	}
	b.texts = append(b.texts, v.texts...)
	b.attachments = append(b.attachments, v.attachments...)
}

// validText is b as a string, with invalid UTF-8 replaced by U+FFFD.
func validText(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
