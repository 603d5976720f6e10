package rim

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Address is one push recipient as an initiator names it.
type Address struct {
	// Dest is a PIN, an e-mail address or a group ("$name"); empty for push_all.
	Dest string
	// Port is the port the address names (WAPPUSH=…%3A<port>/…); 0 when it names none.
	Port int
	// All is BIS's push_all: every active subscriber.
	All bool
}

// ParseAddress parses a PAP address-value: MDS's WAPPUSH=<escaped id>%3A<port>/TYPE=USER@rim.net
// (or @blackberry.com), a bare PIN, e-mail or $group, or BIS's push_all. The id is unescaped
// once, so "simulator%40pushme.com" names simulator@pushme.com.
func ParseAddress(v string) (Address, error) {
	v = strings.TrimSpace(v)
	if strings.EqualFold(v, "push_all") {
		return Address{All: true}, nil
	}
	if len(v) >= 8 && strings.EqualFold(v[:8], "WAPPUSH=") {
		rest := v[8:]
		i := strings.LastIndex(strings.ToUpper(rest), "/TYPE=")
		if i < 0 {
			return Address{}, fmt.Errorf("address %q: no /TYPE=", v)
		}
		typ := strings.ToUpper(rest[i+6:])
		if typ != "USER@RIM.NET" && typ != "USER@BLACKBERRY.COM" {
			return Address{}, fmt.Errorf("address %q: type %q, want USER@rim.net", v, rest[i+6:])
		}
		id, err := url.PathUnescape(rest[:i])
		if err != nil {
			return Address{}, fmt.Errorf("address %q: %w", v, err)
		}
		a := Address{Dest: id}
		if j := strings.LastIndexByte(id, ':'); j >= 0 {
			p, err := strconv.Atoi(id[j+1:])
			if err != nil || p <= 0 || p > 65535 {
				return Address{}, fmt.Errorf("address %q: bad port", v)
			}
			a.Dest, a.Port = id[:j], p
		}
		if a.Dest == "" {
			return Address{}, fmt.Errorf("address %q: empty", v)
		}
		return a, nil
	}
	if v == "" {
		return Address{}, errors.New("empty address")
	}
	return Address{Dest: v}, nil
}

// FormatAddress writes dest (a PIN or e-mail) and port in MDS's PAP address form:
// every byte but letters, digits, + - . _ as %hh.
func FormatAddress(dest string, port int) string {
	var b strings.Builder
	b.WriteString("WAPPUSH=")
	for _, c := range []byte(dest) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '+', c == '-', c == '.', c == '_':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	fmt.Fprintf(&b, "%%3A%d/TYPE=USER@rim.net", port)
	return b.String()
}
