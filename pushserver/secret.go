package pushserver

// Device secrets: how a handset proves on the device link that it is the device its PIN
// names. A PIN's first attach is trusted (trust on first use): the gateway issues it a
// random secret, keeps its hash in the push store (so gateways sharing a store agree, and a
// restart keeps it) and returns it once, in that attach's answer. Every later attach, and a
// detach or ack without the attachment's link token, must carry it, or the password of the
// PIN's --user account when it has one. Options.ResetDevices forgets a PIN's secret, so
// that a handset that lost its state may attach afresh.
//
// A first attach may carry a secret the device made itself (bbsim's handsets do, and keep it
// before they attach): the gateway then adopts it rather than issuing one. An attach whose
// answer was lost (a client timeout under load) is retried with that same secret and finds
// it stored; with a secret only in the lost answer, the PIN would be locked out until reset.
// A proposal must be at least minSecretLen characters, as much as a 128-bit secret in hex.

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/bbsim/bbsim/rim"
)

// minSecretLen is the shortest secret a device may propose at its first attach.
const minSecretLen = 32

// newSecret returns a device secret: 32 random bytes in hex.
func newSecret() string { return randomHex(32) }

// secretHash is what the store keeps of a secret. A secret is 256 random bits, so a fast
// hash keeps it as well as a slow password hash would.
func secretHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func equalString(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// deviceProof is what a device link request carries to prove its PIN.
type deviceProof struct {
	linkToken string // detach and ack: the token the attach returned
	secret    string // the device secret the gateway issued
	password  string // the --user account's password, for a PIN that has one
}

// refusal is a device link request that did not prove its PIN: 401 when it carried no
// proof, 403 when its proof was wrong.
type refusal struct {
	status int
	msg    string
}

// secretOf returns the hash of pin's device secret, "" when it has none. With a shared
// store it asks the store, where another gateway may have issued or a reset forgotten it.
func (s *Server) secretOf(ctx context.Context, pin string) (string, error) {
	if s.st.shared != nil {
		hash, err := s.st.DeviceSecret(ctx, pin)
		if err != nil {
			return "", err
		}
		s.mu.Lock()
		s.device(pin).secret = hash
		s.mu.Unlock()
		return hash, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.device(pin).secret, nil
}

// proveDevice checks that a device link request (what: attach, detach or ack) comes from
// pin's device. It returns the refusal to answer, or nil; for an attach it also returns the
// device secret stored by it, issued or adopted (the PIN's first attach, or an attach proven
// with the account's password whose secret was missing or wrong).
func (s *Server) proveDevice(ctx context.Context, what, pin string, pr deviceProof) (issued string, ref *refusal, err error) {
	if what != "attach" && pr.linkToken != "" {
		if got, ok := s.LinkedPIN(pr.linkToken); ok && got == pin {
			return "", nil, nil
		}
	}
	password := s.passwords[pin]
	for attempt := 0; ; attempt++ {
		hash, err := s.secretOf(ctx, pin)
		if err != nil {
			return "", nil, err
		}
		byPassword := password != "" && pr.password != "" && equalString(pr.password, password)
		bySecret := hash != "" && pr.secret != "" && equalString(secretHash(pr.secret), hash)
		if !byPassword && !bySecret && (hash != "" || password != "") {
			return "", s.refuse(what, pin, pr, hash != "", password != ""), nil
		}
		if what != "attach" || (hash != "" && !byPassword) || bySecret {
			return "", nil, nil
		}
		// A first attach, or one proven with the password that lacks the secret: the
		// device's own proposal, or a new one.
		secret := pr.secret
		if len(secret) < minSecretLen {
			secret = newSecret()
		}
		ok, err := s.st.IssueSecret(ctx, pin, secretHash(secret), byPassword, s.now())
		if err != nil {
			return "", nil, fmt.Errorf("issue device secret: %w", err)
		}
		if ok {
			s.mu.Lock()
			s.device(pin).secret = secretHash(secret)
			s.mu.Unlock()
			s.log.Info("device secret issued", "pin", pin)
			return secret, nil, nil
		}
		// Another attach issued the PIN's first secret meanwhile: check again against it.
		if attempt == 1 {
			return "", s.refuse(what, pin, pr, true, password != ""), nil
		}
	}
}

// refuse words a refusal: what proof was wanted, and how a lost secret is reset.
func (s *Server) refuse(what, pin string, pr deviceProof, hasSecret, hasPassword bool) *refusal {
	s.log.Info("device "+what+" refused: no proof of identity", "pin", pin)
	var want string
	switch {
	case hasSecret && hasPassword:
		want = "device_secret (issued at its first attach) or password (of its --user account)"
	case hasSecret:
		want = "device_secret (this gateway issued it at the PIN's first attach)"
	default:
		want = "password (of its --user account)"
	}
	if what != "attach" {
		want = "link_token (from its attach), " + want
	}
	ref := &refusal{status: http.StatusUnauthorized, msg: fmt.Sprintf("%s as %s refused: no proof of identity; send the %s", what, pin, want)}
	if pr.secret != "" || pr.password != "" || pr.linkToken != "" {
		ref.status = http.StatusForbidden
		ref.msg = fmt.Sprintf("%s as %s refused: wrong proof of identity; want the %s", what, pin, want)
	}
	if hasSecret {
		ref.msg += fmt.Sprintf(". A handset that lost its secret attaches again after the gateway forgets it: bbsim server --reset-device %s", pin)
	}
	return ref
}

// answerRefusal writes a refusal as the device link's JSON error.
func answerRefusal(w http.ResponseWriter, ref *refusal) { jsonError(w, ref.status, ref.msg) }

// resetDevices forgets the device secrets of the PINs, so that their next attach is a first.
func (s *Server) resetDevices(ctx context.Context, pins []string) error {
	for _, p := range pins {
		pin, ok := rim.NormalizePIN(p)
		if strings.EqualFold(p, "all") {
			pin, ok = "", true
		}
		if !ok {
			return fmt.Errorf("pushserver: reset device %q: bad PIN", p)
		}
		if err := s.st.ForgetSecret(ctx, pin); err != nil {
			return err
		}
		s.log.Info("device secret forgotten", "pin", cmp.Or(pin, "all"))
	}
	return nil
}
