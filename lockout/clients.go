package lockout

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"
	"golang.org/x/net/html"
)

// pop3Login logs in over POP3 and returns the server's reply to the login, and a function
// that quits the session when the login succeeded.
func pop3Login(ctx context.Context, addr, user, pass string) (reply string, quit func(), err error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("pop3 %s: %w", addr, err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	tc := textproto.NewConn(conn)
	line := func() (string, error) {
		l, err := tc.ReadLine()
		if err != nil {
			return "", fmt.Errorf("pop3 %s: %w", addr, err)
		}
		return l, nil
	}
	cmd := func(format string, args ...any) (string, error) {
		if err := tc.PrintfLine(format, args...); err != nil {
			return "", err
		}
		return line()
	}
	greeting, err := line()
	if err != nil {
		tc.Close()
		return "", nil, err
	}
	if !strings.HasPrefix(greeting, "+OK") {
		tc.Close()
		return greeting, nil, nil
	}
	r, err := cmd("USER %s", user)
	if err != nil || !strings.HasPrefix(r, "+OK") {
		tc.Close()
		return r, nil, err
	}
	r, err = cmd("PASS %s", pass)
	if err != nil || !strings.HasPrefix(r, "+OK") {
		tc.Close()
		return r, nil, err
	}
	return r, func() {
		cmd("QUIT")
		tc.Close()
	}, nil
}

// secondIMAP logs in and selects INBOX as a second client would, and says what it got.
func secondIMAP(ctx context.Context, t Target) string {
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", t.IMAP)
	if err != nil {
		return "error: " + err.Error()
	}
	c := imapclient.New(conn, nil)
	defer c.Close()
	if err := c.Login(t.Username, t.Password).Wait(); err != nil {
		return "LOGIN " + imapErr(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		return "SELECT " + imapErr(err)
	}
	c.Logout().Wait()
	return "OK"
}

func imapErr(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "imap: ")
	return s
}

// deliver sends a short test mail over SMTP or LMTP.
func deliver(ctx context.Context, t Target, subject string) error {
	addr, lmtp := t.SMTP, false
	if addr == "" {
		addr, lmtp = t.LMTP, true
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	var c *smtp.Client
	if lmtp {
		c = smtp.NewClientLMTP(conn)
	} else {
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	msg := fmt.Sprintf("From: lockout@bbsim.test\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%d@lockout.bbsim>\r\n\r\nA test mail of the lockout scenario.\r\n",
		t.Email, subject, time.Now().Format(time.RFC1123Z), time.Now().UnixNano())
	if err := c.SendMail("lockout@bbsim.test", []string{t.Email}, strings.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

func readText(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 256<<10))
	return string(b)
}

// summarizeWebmail names what a webmail answer showed: "inbox: <title>" for the mailbox,
// or the page's text for a refusal.
func summarizeWebmail(status int, page string) string {
	title, text := pageText(page)
	if status == http.StatusOK && strings.Contains(strings.ToLower(title), "inbox") {
		return "inbox: " + title
	}
	if len(text) > 120 {
		text = text[:120] + "…"
	}
	return fmt.Sprintf("HTTP %d: %s", status, text)
}

// pageText returns an HTML page's title and its visible text on one line.
func pageText(page string) (title, text string) {
	z := html.NewTokenizer(strings.NewReader(page))
	var b strings.Builder
	inTitle, skip := false, 0
	for {
		switch z.Next() {
		case html.ErrorToken:
			return strings.TrimSpace(title), strings.Join(strings.Fields(b.String()), " ")
		case html.StartTagToken:
			switch n, _ := z.TagName(); string(n) {
			case "title":
				inTitle = true
			case "script", "style":
				skip++
			}
		case html.EndTagToken:
			switch n, _ := z.TagName(); string(n) {
			case "title":
				inTitle = false
			case "script", "style":
				skip = max(skip-1, 0)
			}
		case html.TextToken:
			t := string(z.Text())
			if inTitle {
				title += t
			} else if skip == 0 {
				b.WriteString(t)
				b.WriteByte(' ')
			}
		}
	}
}
