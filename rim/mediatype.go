package rim

import (
	"errors"
	"fmt"
	"mime"
	"strings"
)

// ParseMediaType parses a Content-Type as push initiators write it. It accepts what
// mime.ParseMediaType accepts and, where that refuses, what the field sends anyway: unquoted
// values containing "/" or other tspecials (the BIS clients' "type=application/xml"), stray
// spaces, empty parameters and a trailing ";". The media type and parameter names are
// returned in lower case; a quoted value is unquoted. Only a header without a type/subtype
// is an error.
func ParseMediaType(v string) (string, map[string]string, error) {
	if mt, params, err := mime.ParseMediaType(v); err == nil && strings.Contains(mt, "/") {
		return mt, params, nil
	}
	head, rest, _ := strings.Cut(v, ";")
	mt := strings.ToLower(strings.TrimSpace(head))
	typ, sub, ok := strings.Cut(mt, "/")
	if !ok || strings.TrimSpace(typ) == "" || strings.TrimSpace(sub) == "" || strings.ContainsAny(mt, " \t\"") {
		if v == "" {
			return "", nil, errors.New("no media type")
		}
		return "", nil, fmt.Errorf("%q is not a type/subtype", head)
	}
	params := map[string]string{}
	for rest != "" {
		var seg string
		rest = strings.TrimLeft(rest, " \t")
		if strings.HasPrefix(rest, ";") {
			rest = rest[1:]
			continue
		}
		name, after, ok := strings.Cut(rest, "=")
		if !ok {
			// A bare word ("multipart/related; foo"): ignored, as lenient readers do.
			_, rest, _ = strings.Cut(rest, ";")
			continue
		}
		name = strings.ToLower(strings.TrimSpace(name))
		after = strings.TrimLeft(after, " \t")
		if strings.HasPrefix(after, `"`) {
			seg, rest = unquote(after[1:])
		} else {
			seg, rest, _ = strings.Cut(after, ";")
			seg = strings.TrimSpace(seg)
		}
		if name == "" {
			continue
		}
		if _, dup := params[name]; !dup {
			params[name] = seg
		}
	}
	return mt, params, nil
}

// unquote reads a quoted-string whose opening quote is already consumed, and returns it
// and what follows the next ";".
func unquote(s string) (string, string) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			_, rest, _ := strings.Cut(s[i+1:], ";")
			return b.String(), rest
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), "" // no closing quote: the value runs to the end
}

// IsMultipart reports whether a Content-Type names a multipart body.
func IsMultipart(contentType string) bool {
	mt, _, err := ParseMediaType(contentType)
	return err == nil && strings.HasPrefix(mt, "multipart/")
}
