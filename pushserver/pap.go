package pushserver

import (
	"fmt"
	"net/http"
	"time"
)

func (s *Server) handlePAP(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "not implemented", http.StatusNotImplemented)
}

func papResultNotification(p *push, pin, state string, code int, at time.Time) []byte {
	return []byte(fmt.Sprintf("%s %s %s %d %s", p.id, pin, state, code, papTime(at)))
}
