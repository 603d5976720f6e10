package pushserver

// The device link's attachments: a device in coverage attaches and its queue is delivered;
// out of coverage it detaches and its pushes wait.

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"github.com/bbsim/bbsim/rim"
)

// attach marks a device in coverage and starts delivering its queue.
func (s *Server) attach(pin, email, url string, sw rim.Software) (token string, queued int, err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", 0, ErrServerClosed
	}
	s.mu.Unlock()
	recorded := s.ho.attaching(pin, email)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return "", 0, ErrServerClosed
	}
	d := s.device(pin)
	if d.detach != nil {
		d.detach()
	}
	if d.token != "" {
		delete(s.tokens, d.token)
	}
	emailChanged := false
	if email != "" && d.email != email {
		d.email = email
		s.emails[lower(email)] = pin
		emailChanged = true
	}
	d.url = url
	d.software = sw
	d.attached = true
	d.token = newToken()
	s.tokens[d.token] = pin
	ctx, cancel := context.WithCancel(s.ctx)
	d.detach = cancel
	queued = len(d.queue)
	token = d.token
	s.wg.Add(1)
	go s.runDevice(ctx, d, url)
	s.mu.Unlock()
	if emailChanged && !recorded {
		if err := s.st.SaveDevice(s.ctx, pin, email); err != nil {
			s.log.Warn("save device", "pin", pin, "err", err)
		}
	}
	s.log.Info("device attached", "pin", pin, "receiver", url, "queued", queued)
	return token, queued, nil
}

func (s *Server) detach(pin string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.devices[pin]; d != nil {
		s.detachLocked(d)
	}
}

// detachLocked ends a device's attachment. Called with s.mu held.
func (s *Server) detachLocked(d *device) {
	if d.detach != nil {
		d.detach()
		d.detach = nil
	}
	if d.token != "" {
		delete(s.tokens, d.token)
		d.token = ""
	}
	d.attached = false
	s.log.Info("device detached", "pin", d.pin, "queued", len(d.queue))
}

// LinkedPIN resolves the device identified by a link token issued at /device/attach.
func (s *Server) LinkedPIN(linkToken string) (string, bool) {
	if linkToken == "" {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	pin, ok := s.tokens[linkToken]
	return pin, ok
}

// newToken returns a device link token: 16 random bytes in hex.
func newToken() string { return randomHex(16) }

// randomHex returns n random bytes in hex: the gateway's tokens, secrets and push IDs.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
