package browserpush

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/bbsim/bbsim/handset"
	"github.com/bbsim/bbsim/rim"
)

// Device-side push status codes (X-RIM-Push-Status), docs/device-link.md.
const (
	statusRetry     = 234  // refused, retry allowed (HTTP 409)
	statusRefused   = 235  // refused (HTTP 403)
	statusResources = 237  // out of resources (HTTP 503)
	statusType      = 238  // content type not supported (HTTP 415)
	statusMalformed = 400  // malformed push (HTTP 400)
	statusNoApp     = 4502 // no application listening on the port (HTTP 404)
)

var statusHTTP = map[int]int{
	statusRetry:     http.StatusConflict,
	statusRefused:   http.StatusForbidden,
	statusResources: http.StatusServiceUnavailable,
	statusType:      http.StatusUnsupportedMediaType,
	statusMalformed: http.StatusBadRequest,
	statusNoApp:     http.StatusNotFound,
}

// pushError is a push the device answers with an error. status 0 means no
// X-RIM-Push-Status: the gateway takes the device as unreachable and retries.
type pushError struct {
	http   int
	status int
	reason string
}

func (e *pushError) Error() string { return e.reason }

func errf(status int, format string, args ...any) *pushError {
	return &pushError{http: statusHTTP[status], status: status, reason: fmt.Sprintf(format, args...)}
}

// writeError is the one place a push error becomes a wire reply.
func writeError(w http.ResponseWriter, e *pushError) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	if e.status != 0 {
		h.Set(rim.HeaderStatus, strconv.Itoa(e.status))
	}
	w.WriteHeader(e.http)
	_, _ = io.WriteString(w, e.reason+"\n")
}

// reliabilityApplication reports whether the push asks for an application-level
// acknowledgement the device gives: device software before 4.0 gives none.
func (r *Receiver) reliabilityApplication(h http.Header) bool {
	if !r.h.Software().AppAcks() {
		return false
	}
	for _, name := range []string{rim.HeaderReliabilityMode, rim.HeaderReliability} {
		switch strings.ToLower(strings.TrimSpace(h.Get(name))) {
		case "application", "application-preferred", "confirmed", "application-level":
			return true
		}
	}
	return false
}

func (r *Receiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, &pushError{http: http.StatusMethodNotAllowed, reason: "push with POST"})
		return
	}
	if in, _ := r.h.Coverage(); !in {
		// An out-of-coverage device does not answer: the gateway keeps the push queued.
		writeError(w, &pushError{http: http.StatusServiceUnavailable, reason: "handset out of coverage"})
		return
	}
	pushID := strings.TrimSpace(req.Header.Get(rim.HeaderPushID))
	perr := r.receive(w, req, pushID)
	if perr != nil {
		r.log.Info("push rejected", "push_id", pushID, "status", perr.status, "http", perr.http, "err", perr.reason)
		if perr.status != 0 {
			r.h.Emit(handset.EventPushRejected, "push rejected: "+perr.reason,
				map[string]string{"push_id": pushID, "status": strconv.Itoa(perr.status)})
		}
		writeError(w, perr)
	}
}

// receive handles one packet and writes the 200 itself; it returns the error to answer.
func (r *Receiver) receive(w http.ResponseWriter, req *http.Request, pushID string) *pushError {
	port := BrowserPort
	if v := strings.TrimSpace(req.Header.Get(rim.HeaderDestPort)); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			return errf(statusMalformed, "X-RIM-Push-Dest-Port %q is not a port", v)
		}
		port = p
	}
	var pkt *packetInfo
	if v := req.Header.Get(rim.HeaderPacket); v != "" {
		p, err := parsePacket(v)
		if err != nil {
			return errf(statusMalformed, "%v", err)
		}
		pkt = &p
	}
	total := int64(-1)
	if v := strings.TrimSpace(req.Header.Get(rim.HeaderPushLength)); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return errf(statusMalformed, "X-Bbsim-Push-Length %q is not a length", v)
		}
		total = n
	}
	if total > r.maxBody {
		return errf(statusResources, "push of %d bytes exceeds the limit of %d", total, r.maxBody)
	}
	var key string
	if pkt != nil && pushID != "" {
		// A packet of a push already stored: the gateway lost our answer and retries.
		key = doneKey(req.Header, pushID, *pkt, total)
		if res, ok := r.packets.finished(key); ok {
			if res.err != nil {
				return res.err
			}
			w.WriteHeader(http.StatusOK)
			if pkt.index == pkt.count-1 && r.gateway != "" && r.reliabilityApplication(req.Header) {
				r.ackLater(pushID, pushSource(req.Header), 1000) // the first ack may be what got lost
			}
			return nil
		}
	}
	if pkt != nil && pkt.count > 1 && pushID == "" {
		return errf(statusMalformed, "a push of several packets needs X-RIM-Push-ID")
	}

	body, err := readBody(w, req, r.maxBody)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errf(statusResources, "push of more than %d bytes", r.maxBody)
		}
		return &pushError{http: http.StatusBadRequest, reason: "read push: " + err.Error()}
	}

	if pkt != nil && pkt.count > 1 {
		full, perr := r.packets.add(req.Context(), r.packetWait, pushKey{source: req.Header.Get(rim.HeaderPushSource), id: pushID}, *pkt, total, body)
		if perr != nil {
			return perr
		}
		if full == nil { // an earlier packet, stored
			w.WriteHeader(http.StatusOK)
			return nil
		}
		body = full
	} else if total >= 0 && int64(len(body)) != total {
		return errf(statusMalformed, "received %d bytes, X-Bbsim-Push-Length says %d", len(body), total)
	}

	p := &push{id: pushID, port: port, header: req.Header, body: body}
	perr := r.apply(req.Context(), p)
	if key != "" && (perr == nil || perr.status != 0) {
		r.packets.finish(key, result{err: perr})
	}
	if perr != nil {
		return perr
	}
	w.WriteHeader(http.StatusOK)
	r.log.Debug("push stored", "push_id", pushID, "port", port, "bytes", len(body))
	if pushID != "" && r.gateway != "" && r.reliabilityApplication(req.Header) {
		r.ackLater(pushID, pushSource(req.Header), 1000)
	}
	return nil
}

// pushSource is the source a packet names, which the device's acknowledgement names in
// turn, since push ids are unique per source only; nil when the packet names none (a push
// not from the gateway).
func pushSource(h http.Header) *string {
	v, ok := h[rim.HeaderPushSource]
	if !ok || len(v) == 0 {
		return nil
	}
	src := strings.TrimSpace(v[0])
	return &src
}

// readBody reads a request body of at most limit bytes, sized by Content-Length when given.
func readBody(w http.ResponseWriter, req *http.Request, limit int64) ([]byte, error) {
	rd := http.MaxBytesReader(w, req.Body, limit)
	if n := req.ContentLength; n >= 0 && n <= limit {
		buf := make([]byte, n)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	return io.ReadAll(rd)
}

// doneKey identifies a gateway push for retries. Push IDs are unique per initiator only, so
// the key also holds what the push says about itself: two initiators' pushes with the same
// ID are told apart.
func doneKey(h http.Header, pushID string, p packetInfo, total int64) string {
	var b strings.Builder
	b.WriteString(pushID)
	fmt.Fprintf(&b, "\x00%d\x00%d", p.count, total)
	for _, k := range []string{rim.HeaderPushSource, rim.HeaderPushType, rim.HeaderContentLocation, rim.HeaderChannelID, rim.HeaderTitle, "Content-Type", rim.HeaderDestPort} {
		b.WriteByte(0)
		b.WriteString(h.Get(k))
	}
	return b.String()
}
