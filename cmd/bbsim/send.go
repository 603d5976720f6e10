package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/bbsim/bbsim/internal/sendmail"
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
	case file != "":
		b, err := readFileArg(file)
		if err != nil {
			return err
		}
		body = string(b)
	case body == "":
		body = "Sent by bbsim send at " + time.Now().Format(time.RFC1123Z) + "."
	}
	msg, id := sendmail.Compose(from, to, subject, body, time.Now())
	if err := sendmail.Send(ctx, addr, from, to, msg); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sent %s to %s via %s\n", id, strings.Join(to, ", "), addr)
	return nil
}
