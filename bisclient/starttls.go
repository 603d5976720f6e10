package bisclient

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// startTLS upgrades a fresh IMAP connection with STARTTLS (RFC 3501 §6.2.1) itself rather
// than through imapclient, whose upgrade happens out of reach below its reader: done here,
// the byeConn sits above TLS and reads what the server says afterwards (a BYE's reason).
// It returns the TLS connection that replays the server's greeting to imapclient first,
// without the capabilities it may carry, which RFC 3501 says a client must forget after
// STARTTLS. A greeting of BYE is returned as is, over the plain connection, so the reason
// is recorded like any other BYE.
func (c *Client) startTLS(ctx context.Context, conn net.Conn, addr string) (net.Conn, error) {
	conn.SetDeadline(time.Now().Add(c.opts.NoopTimeout))
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	br := bufio.NewReader(conn)
	greeting, err := readLine(br)
	if err != nil {
		return nil, fmt.Errorf("starttls %s: greeting: %w", addr, err)
	}
	status, text := imapStatus(greeting)
	switch status {
	case "OK":
	case "BYE":
		conn.SetDeadline(time.Time{})
		return &replayConn{Conn: conn, r: io.MultiReader(strings.NewReader(greeting+"\r\n"), br)}, nil
	default:
		return nil, fmt.Errorf("starttls %s: unexpected greeting %q", addr, greeting)
	}
	if _, err := io.WriteString(conn, "S1 STARTTLS\r\n"); err != nil {
		return nil, fmt.Errorf("starttls %s: %w", addr, err)
	}
	for {
		line, err := readLine(br)
		if err != nil {
			return nil, fmt.Errorf("starttls %s: %w", addr, err)
		}
		if strings.HasPrefix(line, "* ") {
			if st, _ := imapStatus(line); st == "BYE" {
				conn.SetDeadline(time.Time{})
				return &replayConn{Conn: conn, r: io.MultiReader(strings.NewReader(line+"\r\n"), br)}, nil
			}
			continue
		}
		if rest, ok := strings.CutPrefix(line, "S1 "); ok {
			if st, _, _ := strings.Cut(rest, " "); !strings.EqualFold(st, "OK") {
				return nil, fmt.Errorf("starttls %s: server answered %q", addr, rest)
			}
			break
		}
	}
	if br.Buffered() > 0 {
		// Plaintext sent after the OK would be taken as coming over TLS (CVE-2011-0411).
		return nil, fmt.Errorf("starttls %s: server sent data before the TLS handshake", addr)
	}
	tc, err := c.handshake(ctx, conn, addr)
	if err != nil {
		return nil, fmt.Errorf("starttls: %w", err)
	}
	conn.SetDeadline(time.Time{})
	return &replayConn{Conn: tc, r: io.MultiReader(strings.NewReader("* OK "+text+"\r\n"), tc)}, nil
}

// readLine reads one line of at most 8 KiB, without its CRLF.
func readLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, more, err := br.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, chunk...)
		if len(b) > 8192 {
			return "", fmt.Errorf("line longer than 8 KiB")
		}
		if !more {
			return string(b), nil
		}
	}
}

// imapStatus splits an untagged status line ("* OK [CODE] text") into its status, in
// upper case, and its text without the response code.
func imapStatus(line string) (status, text string) {
	rest, ok := strings.CutPrefix(line, "* ")
	if !ok {
		return "", line
	}
	status, text, _ = strings.Cut(rest, " ")
	if strings.HasPrefix(text, "[") {
		if i := strings.IndexByte(text, ']'); i >= 0 {
			text = strings.TrimSpace(text[i+1:])
		}
	}
	if text == "" {
		text = "ready" // RFC 3501 requires text; some servers send none
	}
	return strings.ToUpper(status), text
}

// replayConn is a connection whose reads start with lines already read from it.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }
