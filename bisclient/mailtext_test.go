package bisclient

import (
	"encoding/base64"
	"slices"
	"strings"
	"testing"

	"github.com/bbsim/bbsim/handset"
)

// crlf turns a readable message into one with CRLF line ends.
func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

func TestRenderMail(t *testing.T) {
	t.Parallel()
	pdf := strings.Repeat("%PDF", 300) // 1,200 bytes, 1,600 in base64
	tests := []struct {
		name        string
		raw         string
		contentType string
		text        string
		attachments []handset.Attachment
	}{
		{"latin-1 quoted-printable", "Content-Type: text/plain; charset=ISO-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nCaf=E9 ouvert\n",
			"text/plain", "Café ouvert", nil},
		{"windows-1252 8bit", "Content-Type: text/plain; charset=windows-1252\n\n\x93Quoted\x94 \x80 5\n",
			"text/plain", "“Quoted” € 5", nil},
		{"koi8-r base64", "Content-Type: text/plain; charset=koi8-r\nContent-Transfer-Encoding: base64\n\n" + base64.StdEncoding.EncodeToString([]byte("\xf0\xd2\xc9\xd7\xc5\xd4")) + "\n",
			"text/plain", "Привет", nil},
		{"iso-2022-jp", "Content-Type: text/plain; charset=ISO-2022-JP\n\n\x1b$B$3$s$K$A$O\x1b(B\n",
			"text/plain", "こんにちは", nil},
		{"shift_jis", "Content-Type: text/plain; charset=Shift_JIS\n\n\x82\xb1\x82\xf1\x82\xc9\x82\xbf\x82\xcd\n",
			"text/plain", "こんにちは", nil},
		{"unknown charset shown as is", "Content-Type: text/plain; charset=x-martian\n\nplain words\n",
			"text/plain", "plain words", nil},
		{"no content type", "Subject: x\n\nJust text.\n", "text/plain", "Just text.", nil},
		{"html only", "Content-Type: text/html; charset=utf-8\n\n<html><head><style>p{}</style></head><body><h1>Sale</h1><p>Now <b>on</b>: <a href=\"http://shop.test/\">shop</a></p></body></html>\n",
			"text/html", "Sale\n====\n\nNow on: shop[1]\n\nReferences\n[1] http://shop.test/", nil},
		{"html in latin-1 whose meta says otherwise", "Content-Type: text/html; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n<meta charset=3D\"koi8-r\"><p>D=E9j=E0 vu</p>\n",
			"text/html", "Déjà vu", nil},
		{"alternative prefers plain", `Content-Type: multipart/alternative; boundary=b

--b
Content-Type: text/plain; charset=utf-8

The plain version.
--b
Content-Type: text/html; charset=utf-8

<p>The <i>HTML</i> version.</p>
--b--
`, "text/plain", "The plain version.", nil},
		{"alternative with html first still prefers plain", `Content-Type: multipart/alternative; boundary=b

--b
Content-Type: text/html

<p>HTML</p>
--b
Content-Type: text/plain

Plain
--b--
`, "text/plain", "Plain", nil},
		{"mixed: alternative html only, and attachments", `Content-Type: multipart/mixed; boundary=m

--m
Content-Type: multipart/alternative; boundary=a

--a
Content-Type: text/html; charset=windows-1252
Content-Transfer-Encoding: quoted-printable

<p>See the report =96 attached.</p>
--a--
--m
Content-Type: application/pdf; name="ignored.pdf"
Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf
Content-Transfer-Encoding: base64

` + base64.StdEncoding.EncodeToString([]byte(pdf)) + `
--m
Content-Type: image/png; name="=?iso-8859-1?q?photo_=E9t=E9.png?="
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--m
Content-Type: text/plain; name=notes.txt
Content-Disposition: attachment

a note
--m--
`, "text/html", "See the report – attached.", []handset.Attachment{
			{Name: "résumé.pdf", ContentType: "application/pdf", Size: 1200},
			{Name: "photo été.png", ContentType: "image/png", Size: 8},
			{Name: "notes.txt", ContentType: "text/plain", Size: 6},
		}},
		{"two text parts of a mixed", `Content-Type: multipart/mixed; boundary=m

--m
Content-Type: text/plain

First.
--m
Content-Type: text/plain; charset=iso-8859-15

Second =A4.
--m--
`, "text/plain", "First.\n\nSecond =A4.", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ct, text, atts := renderMail(crlf(tc.raw))
			if ct != tc.contentType || text != tc.text {
				t.Errorf("renderMail(%q) = %q, %q; want %q, %q", tc.raw, ct, text, tc.contentType, tc.text)
			}
			if !slices.Equal(atts, tc.attachments) {
				t.Errorf("renderMail(%q) attachments = %+v, want %+v", tc.raw, atts, tc.attachments)
			}
		})
	}
}

func TestRenderMailDeepNesting(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := range 200 {
		b.WriteString("Content-Type: multipart/mixed; boundary=b" + strings.Repeat("x", i) + "\n\n--b" + strings.Repeat("x", i) + "\n")
	}
	b.WriteString("Content-Type: text/plain\n\ndeep\n")
	ct, _, _ := renderMail(crlf(b.String()))
	if ct != "text/plain" {
		t.Fatalf("renderMail of 200 nested multiparts: content type %q", ct)
	}
}
