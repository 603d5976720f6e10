package pushserver

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"

	"github.com/bbsim/bbsim/rim"
)

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/push", s.handleRIM)
	mux.HandleFunc("/pap", s.handlePAP)
	mux.HandleFunc("POST /device/attach", s.handleAttach)
	mux.HandleFunc("POST /device/detach", s.handleDetach)
	mux.HandleFunc("POST /device/ack", s.handleAck)
	mux.HandleFunc("POST /device/check", s.handleCheck)
	mux.HandleFunc("GET /api/v1/pushes/{id}", s.handlePushStatus)
	mux.HandleFunc("GET /api/v1/devices", s.handleDevices)
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	for prefix, h := range s.opts.Mount {
		mux.Handle(prefix, h)
	}
	return mux
}

// checkSize answers 414/431 for requests over MaxHeaderBytes with a hint to use PAP, whose
// options travel in the body.
func (s *Server) checkSize(w http.ResponseWriter, r *http.Request, what string) bool {
	max := s.opts.MaxHeaderBytes
	hint := "; send long destination lists and push options with PAP (POST /pap), which carries them in the body"
	if what == "PAP" {
		hint = "; put addresses and options in the PAP body, not in the URL or headers"
	}
	line := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4
	if line > max {
		s.m.rejected.Add(1)
		http.Error(w, fmt.Sprintf("%s: request line of %d bytes is over the %d-byte limit%s", what, line, max, hint), http.StatusRequestURITooLong)
		return false
	}
	n := line
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	if n > max {
		s.m.rejected.Add(1)
		http.Error(w, fmt.Sprintf("%s: request line and headers of %d bytes are over the %d-byte limit%s", what, n, max, hint), http.StatusRequestHeaderFieldsTooLarge)
		return false
	}
	return true
}

// authenticate checks HTTP Basic credentials when push authentication is on. It answers
// 401 with a challenge when they are missing and 403 when they are wrong.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*Initiator, bool) {
	if len(s.opts.PushAuth) == 0 {
		return nil, true
	}
	name, pass, ok := r.BasicAuth()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="bbsim push", charset="UTF-8"`)
		http.Error(w, "push authentication required", http.StatusUnauthorized)
		return nil, false
	}
	for i := range s.opts.PushAuth {
		ini := &s.opts.PushAuth[i]
		if subtle.ConstantTimeCompare([]byte(ini.Name), []byte(name)) == 1 &&
			subtle.ConstantTimeCompare([]byte(ini.Password), []byte(pass)) == 1 {
			return ini, true
		}
	}
	s.log.Info("push initiator refused", "user", name, "remote", r.RemoteAddr)
	http.Error(w, "push initiator not authorized", http.StatusForbidden)
	return nil, false
}

// scopeOf is whose pushes an initiator may look up, cancel or replace: under push
// authentication its own (those it sent under its name), otherwise any.
func scopeOf(ini *Initiator) scope {
	if ini == nil {
		return anySource
	}
	return sourceScope(ini.Name)
}

// readAll reads a request body up to MaxBodyBytes; over it, the error is an
// *http.MaxBytesError.
func (s *Server) readAll(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if n := r.ContentLength; n >= 0 && n <= s.opts.MaxBodyBytes && n <= 1<<20 {
		// A declared length: read it into a buffer of that size (net/http's body reader
		// ends at the length and reports a body cut short).
		body := make([]byte, n)
		_, err := io.ReadFull(r.Body, body)
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return body, err
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
}

func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := s.readAll(w, r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.rimError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over the %d-byte limit", s.opts.MaxBodyBytes))
			return nil, false
		}
		s.rimError(w, http.StatusBadRequest, "read body: "+err.Error())
		return nil, false
	}
	return body, true
}

type attachRequest struct {
	PIN         string `json:"pin"`
	Email       string `json:"email"`
	ReceiverURL string `json:"receiver_url"`
	// A detach may give the link token; an attach gives the secret or the password.
	proofRequest
	// Software is the device software version (attach; optional): what the device
	// supports, as MDS knew it (application-level acknowledgements from 4.0).
	Software string `json:"software,omitempty"`
}

// proofRequest is a device link request's proof of identity (secret.go): the link token
// its attach returned, the device secret the gateway keeps since the PIN's first attach,
// or its account's password.
type proofRequest struct {
	DeviceSecret string `json:"device_secret,omitempty"`
	Password     string `json:"password,omitempty"`
	LinkToken    string `json:"link_token,omitempty"`
}

func (r *proofRequest) proof() deviceProof {
	return deviceProof{linkToken: r.LinkToken, secret: r.DeviceSecret, password: r.Password}
}

type checkRequest struct {
	PIN       string `json:"pin"`
	LinkToken string `json:"link_token"`
}

type ackRequest struct {
	PIN    string `json:"pin"`
	PushID string `json:"push_id"`
	Code   int    `json:"code"`
	// Source is the push's source as its packets named it (X-Bbsim-Push-Source, "" for a
	// push without one); absent, the ack is for the only push with the id waiting.
	Source *string `json:"source,omitempty"`
	proofRequest
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// maxJSONBody bounds a device-link request's JSON body.
const maxJSONBody = 64 << 10

// readJSON decodes the device-link request's JSON body into v, or answers 413 (over
// maxJSONBody) or 400 (bad JSON) and reports false.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody)).Decode(v)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		jsonError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("JSON body over %d KiB", maxJSONBody>>10))
	case err != nil:
		jsonError(w, http.StatusBadRequest, fmt.Sprintf("bad JSON: %v", err))
	}
	return err == nil
}

func (s *Server) handleAttach(w http.ResponseWriter, r *http.Request) {
	var req attachRequest
	if !readJSON(w, r, &req) {
		return
	}
	pin, ok := rim.NormalizePIN(req.PIN)
	if !ok {
		jsonError(w, http.StatusBadRequest, fmt.Sprintf("bad PIN %q: want 8 hex digits", req.PIN))
		return
	}
	u, err := url.Parse(req.ReceiverURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		jsonError(w, http.StatusBadRequest, fmt.Sprintf("bad receiver_url %q: want an http URL", req.ReceiverURL))
		return
	}
	var sw rim.Software
	if req.Software != "" {
		if sw, err = rim.ParseSoftware(req.Software); err != nil {
			jsonError(w, http.StatusBadRequest, "bad software: "+err.Error())
			return
		}
	}
	// The device proves itself before anything changes: a failed attach leaves the current
	// link alone.
	req.LinkToken = "" // no proof for an attach, which makes a new one
	secret, ref, err := s.proveDevice(r.Context(), "attach", pin, req.proof())
	if ref != nil {
		answerRefusal(w, ref)
		return
	}
	var token string
	var queued int
	if err == nil {
		token, queued, err = s.attach(pin, req.Email, req.ReceiverURL, sw)
		if err != nil && secret != "" {
			// The secret may never reach the device: forget it, or the PIN is locked out.
			s.st.ForgetSecret(context.WithoutCancel(r.Context()), pin)
		}
	}
	if err != nil {
		jsonError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	out := map[string]any{"pin": pin, "queued": queued, "link_token": token}
	if secret != "" {
		out["device_secret"] = secret // once: the store keeps only its hash
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleDetach(w http.ResponseWriter, r *http.Request) {
	var req attachRequest
	if !readJSON(w, r, &req) {
		return
	}
	pin, ok := rim.NormalizePIN(req.PIN)
	if !ok {
		jsonError(w, http.StatusBadRequest, fmt.Sprintf("bad PIN %q: want 8 hex digits", req.PIN))
		return
	}
	if _, ref, err := s.proveDevice(r.Context(), "detach", pin, req.proof()); ref != nil || err != nil {
		s.refused(w, ref, err)
		return
	}
	s.detach(pin)
	writeJSON(w, http.StatusOK, map[string]any{"pin": pin})
}

// refused answers a device link request that did not prove its PIN, or whose proof could
// not be checked.
func (s *Server) refused(w http.ResponseWriter, ref *refusal, err error) {
	if ref != nil {
		answerRefusal(w, ref)
		return
	}
	s.log.Error("check device proof", "err", err)
	jsonError(w, http.StatusServiceUnavailable, "cannot check the device's proof of identity now; retry")
}

// handleCheck tells a handset whether its attachment still holds: a restarted gateway has
// forgotten it (the link token is unknown), and the handset then attaches again.
func (s *Server) handleCheck(w http.ResponseWriter, r *http.Request) {
	var req checkRequest
	if !readJSON(w, r, &req) {
		return
	}
	pin, ok := rim.NormalizePIN(req.PIN)
	if !ok || req.LinkToken == "" {
		jsonError(w, http.StatusBadRequest, "want pin (8 hex digits) and link_token")
		return
	}
	got, ok := s.LinkedPIN(req.LinkToken)
	writeJSON(w, http.StatusOK, map[string]any{"pin": pin, "attached": ok && got == pin})
}

func (s *Server) handleAck(w http.ResponseWriter, r *http.Request) {
	var req ackRequest
	if !readJSON(w, r, &req) {
		return
	}
	pin, ok := rim.NormalizePIN(req.PIN)
	if !ok || req.PushID == "" || req.Code == 0 {
		jsonError(w, http.StatusBadRequest, "want pin (8 hex digits), push_id and code")
		return
	}
	if _, ref, err := s.proveDevice(r.Context(), "ack", pin, req.proof()); ref != nil || err != nil {
		s.refused(w, ref, err)
		return
	}
	ok, err := s.ack(pin, req.PushID, req.Source, req.Code)
	if !ok && err == nil {
		ok, err = s.ho.ackElsewhere(pin, req.PushID, req.Source, req.Code)
	}
	switch {
	case errors.Is(err, errAmbiguousAck):
		jsonError(w, http.StatusConflict, fmt.Sprintf("pushes of several senders with id %q wait for an acknowledgement from %s: say which with \"source\" (the X-Bbsim-Push-Source its packets carried)", req.PushID, pin))
		return
	case !ok:
		what := ""
		if req.Source != nil {
			what = fmt.Sprintf(" from source %q", *req.Source)
		}
		jsonError(w, http.StatusNotFound, fmt.Sprintf("no push %q%s waiting for an acknowledgement from %s", req.PushID, what, pin))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"pin": pin, "push_id": req.PushID})
}

func (s *Server) handlePushStatus(w http.ResponseWriter, r *http.Request) {
	// Under --push-auth, what was pushed to whom is for initiators only, each its own.
	ini, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	ps, err := s.st.pushStatus(s.ctx, scopeOf(ini), r.PathValue("id"))
	if errors.Is(err, ErrNotFound) {
		jsonError(w, http.StatusNotFound, "push not found")
		return
	}
	if err != nil {
		s.log.Error("read push status", "err", err)
		jsonError(w, http.StatusInternalServerError, "internal error")
		return
	}
	writeJSON(w, http.StatusOK, ps)
}

type deviceInfo struct {
	PIN         string `json:"pin"`
	Email       string `json:"email,omitempty"`
	Attached    bool   `json:"attached"`
	ReceiverURL string `json:"receiver_url,omitempty"`
	Queued      int    `json:"queued"`
	Delivered   int    `json:"delivered"`
	// Software is the device software the device reported when it last attached.
	Software string `json:"software,omitempty"`
	// Gateway: with a shared push store, the gateway the device attached at last.
	Gateway string `json:"gateway,omitempty"`
}

func (s *Server) handleDevices(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.authenticate(w, r); !ok {
		return
	}
	s.mu.Lock()
	out := make([]deviceInfo, 0, len(s.devices))
	for _, d := range s.devices {
		di := deviceInfo{PIN: d.pin, Email: d.email, Attached: d.attached, Queued: len(d.queue), Delivered: d.delivered, Gateway: s.ho.gateway(d.pin), Software: d.software.String()}
		if d.attached {
			di.ReceiverURL = d.url
			if u, err := url.Parse(d.url); err == nil {
				di.ReceiverURL = u.Redacted() // a receiver's token stays with the gateway
			}
		}
		out = append(out, di)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].PIN < out[j].PIN })
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	s.m.handler.ServeHTTP(w, r)
}
