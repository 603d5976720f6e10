package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

func cmdSend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("send", stderr)
	var to strList
	var addr, from, subject, body, file string
	fs.StringVar(&addr, "smtp", "127.0.0.1:2525", "SMTP server `HOST:PORT`")
	fs.StringVar(&from, "from", "tester@bbsim.test", "envelope and header sender")
	fs.Var(&to, "to", "recipient (repeatable; default alice@bbsim.test)")
	fs.StringVar(&subject, "subject", "Test message", "subject")
	fs.StringVar(&body, "body", "", "text body (default: a line naming the time)")
	fs.StringVar(&file, "file", "", "text body from this file (- for stdin)")
	if err := parseTool(fs, args); err != nil {
		return err
	}
	if len(to) == 0 {
		to = strList{"alice@bbsim.test"}
	}
	switch {
	case file != "" && body != "":
		return errors.New("give --body or --file, not both")
	case file == "-":
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return err
		}
		body = string(b)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		body = string(b)
	case body == "":
		body = "Sent by bbsim send at " + time.Now().Format(time.RFC1123Z) + "."
	}
	msg, id := composeMail(from, to, subject, body, time.Now())
	if err := sendMail(ctx, addr, from, to, msg); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sent %s to %s via %s\n", id, strings.Join(to, ", "), addr)
	return nil
}

// composeMail builds an RFC 5322 text message and returns it with its Message-ID.
func composeMail(from string, to []string, subject, body string, now time.Time) ([]byte, string) {
	var rnd [8]byte
	rand.Read(rnd[:])
	id := "<" + hex.EncodeToString(rnd[:]) + "@bbsim>"
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: %s\r\n", from)
	fmt.Fprintf(&b, "To: %s\r\n", strings.Join(to, ", "))
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", subject))
	fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: %s\r\n", id)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	body = strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")
	b.WriteString(body)
	if !strings.HasSuffix(body, "\r\n") {
		b.WriteString("\r\n")
	}
	return b.Bytes(), id
}

// sendMail delivers msg over plain SMTP (the bundled server does not require STARTTLS).
func sendMail(ctx context.Context, addr, from string, to []string, msg []byte) error {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", addr, err)
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.SendMail(from, to, bytes.NewReader(msg)); err != nil {
		return fmt.Errorf("smtp %s: %w", addr, err)
	}
	return c.Quit()
}
