package rim

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"strings"
)

// Part is one part of a multipart push body, with its own headers.
type Part struct {
	Header textproto.MIMEHeader
	Body   []byte
}

// ErrNoBoundary is returned for a multipart Content-Type without a usable boundary.
var ErrNoBoundary = errors.New("multipart body without a usable boundary")

// SplitMultipart splits a multipart body into at most maxParts parts (0: no limit). It
// reads what the field sends: CRLF or LF line endings, a preamble, an epilogue, and
// anything after the closing boundary (the BIS clients' "\n\r"). Part bodies are returned
// as sent; DecodeBody undoes a transfer encoding.
func SplitMultipart(contentType string, body []byte, maxParts int) ([]Part, error) {
	mt, params, err := ParseMediaType(contentType)
	if err != nil {
		return nil, fmt.Errorf("bad Content-Type %q: %w", contentType, err)
	}
	if !strings.HasPrefix(mt, "multipart/") {
		return nil, fmt.Errorf("%s is not multipart", mt)
	}
	boundary := params["boundary"]
	if boundary == "" || len(boundary) > 200 || !bytes.Contains(body, []byte("--"+boundary)) {
		return nil, ErrNoBoundary
	}
	// RFC 2046 §5.1.1: what follows the close delimiter is to be ignored; Go's reader
	// insists it be a line ending, so it is cut off.
	if i := bytes.LastIndex(body, []byte("--"+boundary+"--")); i >= 0 {
		body = body[:i+len(boundary)+4]
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	var parts []Part
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("multipart body: %w", err)
		}
		if maxParts > 0 && len(parts) == maxParts {
			return nil, fmt.Errorf("multipart body of more than %d parts", maxParts)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return nil, fmt.Errorf("multipart body: %w", err)
		}
		parts = append(parts, Part{Header: p.Header, Body: b})
	}
	if len(parts) == 0 {
		return nil, errors.New("multipart body without parts")
	}
	return parts, nil
}

// DecodeBody undoes the transfer encoding a content declares in Content-Transfer-Encoding
// (or, as some initiators write it, Content-Encoding): base64 or quoted-printable. It
// returns the body as is for 7bit, 8bit, binary, none or any other Content-Encoding (gzip
// and its kin are the content's own, left to the reader), and reports whether it decoded.
func DecodeBody(h map[string][]string, body []byte) ([]byte, bool, error) {
	hdr := textproto.MIMEHeader(h)
	enc := strings.ToLower(strings.TrimSpace(hdr.Get("Content-Transfer-Encoding")))
	if enc == "" {
		enc = strings.ToLower(strings.TrimSpace(hdr.Get("Content-Encoding")))
	}
	switch enc {
	case "base64":
		// Line breaks and spaces are part of the encoding's layout, not of the data.
		clean := bytes.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, body)
		out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
		n, err := base64.StdEncoding.Decode(out, clean)
		if err != nil {
			n, err = base64.RawStdEncoding.Decode(out, bytes.TrimRight(clean, "="))
		}
		if err != nil {
			return nil, false, fmt.Errorf("content is not valid base64: %w", err)
		}
		return out[:n], true, nil
	case "quoted-printable":
		out, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		if err != nil {
			return nil, false, fmt.Errorf("content is not valid quoted-printable: %w", err)
		}
		return out, true, nil
	}
	return body, false, nil
}
