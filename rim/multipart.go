package rim

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/textproto"
	"strings"
)

// Part is one part of a multipart push body, with its own headers.
type Part struct {
	Header textproto.MIMEHeader
	Body   []byte
}

// splitParts returns the raw parts between delimiter lines: a delimiter is "--boundary" at
// the start of a line, the close delimiter "--boundary--". The line ending before a
// delimiter belongs to it; the preamble and whatever follows the close delimiter (an
// epilogue, the BIS clients' "\n\r") are dropped, as RFC 2046 §5.1.1 says. A body without
// a close delimiter ends at its end.
func splitParts(body, delim []byte) [][]byte {
	var starts []int // offsets of delimiter lines
	for i := 0; i < len(body); {
		j := bytes.Index(body[i:], delim)
		if j < 0 {
			break
		}
		at := i + j
		if at == 0 || body[at-1] == '\n' {
			starts = append(starts, at)
		}
		i = at + len(delim)
	}
	var parts [][]byte
	for k, at := range starts {
		rest := body[at+len(delim):]
		if bytes.HasPrefix(rest, []byte("--")) {
			break // the close delimiter
		}
		// The rest of the delimiter line (transport padding) is not part of the part.
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			break
		}
		start := at + len(delim) + nl + 1
		end := len(body)
		if k+1 < len(starts) {
			end = starts[k+1]
		}
		p := body[start:end]
		p = bytes.TrimSuffix(p, []byte("\n"))
		p = bytes.TrimSuffix(p, []byte("\r"))
		parts = append(parts, p)
	}
	return parts
}

// readPart reads one part's headers and body. The headers end at the first empty line or,
// leniently, at the first line that is not a header: Kannel's test_ppg writes its extra
// part header (-S) where the empty line should be.
func readPart(raw []byte) Part {
	h := textproto.MIMEHeader{}
	rest := raw
	var last string
	for len(rest) > 0 {
		line := rest
		next := []byte(nil)
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, next = rest[:i], rest[i+1:]
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			rest = next
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && last != "" {
			vs := h[last]
			vs[len(vs)-1] += " " + strings.TrimSpace(string(line))
			rest = next
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !isToken(name) {
			break // the body starts here
		}
		last = textproto.CanonicalMIMEHeaderKey(string(name))
		h.Add(last, strings.TrimSpace(string(value)))
		rest = next
	}
	return Part{Header: h, Body: rest}
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
	var parts []Part
	for _, raw := range splitParts(body, []byte("--"+boundary)) {
		if maxParts > 0 && len(parts) == maxParts {
			return nil, fmt.Errorf("multipart body of more than %d parts", maxParts)
		}
		parts = append(parts, readPart(raw))
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

// isToken reports whether b is a header field name: letters, digits and - _ .
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
