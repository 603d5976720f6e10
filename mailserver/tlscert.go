package mailserver

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bbsim/bbsim/internal/selfsigned"
)

// CertFile is where a server whose DataDir is dir keeps its TLS certificate (PEM),
// self-signed on first start: a client trusts the server by trusting this file.
func CertFile(dir string) string { return filepath.Join(dir, "cert.pem") }

// loadOrMakeCert loads the server certificate from dir, making a self-signed one for the
// domain, its service names and loopback on first start.
func loadOrMakeCert(dir, domain string) (*tls.Config, error) {
	certPath, keyPath := CertFile(dir), filepath.Join(dir, "key.pem")
	if cert, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		// Older versions left them readable by all.
		for _, p := range []string{certPath, keyPath} {
			if err := os.Chmod(p, 0o600); err != nil {
				return nil, fmt.Errorf("make %s private: %w", p, err)
			}
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
	}
	if err := selfsigned.Write(certPath, keyPath, domain, "imap."+domain, "pop3."+domain, "smtp."+domain, "mail."+domain); err != nil {
		return nil, fmt.Errorf("mailserver: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
