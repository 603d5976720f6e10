package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bbsim/bbsim/config"
	"github.com/bbsim/bbsim/emulator"
)

// The servers' start-up lines say where the self-signed certificate is.
func TestServerPrintsCertificate(t *testing.T) {
	t.Parallel()
	c := config.Default()
	c.Data = t.TempDir()
	for _, p := range []*string{&c.Mail.IMAP, &c.Mail.POP3, &c.Mail.SMTP, &c.Mail.Webmail, &c.Push.Addr, &c.DNS.Addr} {
		*p = "127.0.0.1:0"
	}
	e, err := emulator.New(emulator.Options{Config: c, Mode: emulator.ModeServer})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	defer e.Run(ctx) // releases the listeners and stores
	var out bytes.Buffer
	printListeners(&out, e)
	cert := filepath.Join(c.Data, "mail", "cert.pem")
	if !strings.Contains(out.String(), "bbsim: tls cert "+cert+" (self-signed") {
		t.Fatalf("start-up lines do not name %s:\n%s", cert, out.String())
	}
	if _, err := os.Stat(cert); err != nil {
		t.Fatal(err)
	}
}
