package mailserver

import (
	"fmt"
	"net/http"
	"sort"

	"github.com/emersion/go-imap/v2"
)

// Reset deletes every message of every account's INBOX, as a test suite does between
// tests, and returns how many it deleted. Sessions that have the INBOX selected get
// EXPUNGE; UIDs go on from where they were (UIDVALIDITY stays), so a client's sync position
// stays valid and no later message reuses a UID. It is an administrator's act: it does not
// wait for, or take, any session's hold on the store.
func (s *Server) Reset() (int, error) {
	emails := make([]string, 0, len(s.users))
	for e := range s.users {
		emails = append(emails, e)
	}
	sort.Strings(emails)
	n := 0
	for _, e := range emails {
		inbox := s.users[e].inbox()
		var uids []imap.UID
		for _, m := range inbox.Messages() {
			uids = append(uids, m.UID)
		}
		if len(uids) == 0 {
			continue
		}
		k, err := inbox.Remove(uids)
		n += k
		if err != nil {
			return n, fmt.Errorf("mailserver: reset %s: %w", e, err)
		}
	}
	s.log.Info("mail store reset", "deleted", n)
	return n, nil
}

// handleReset serves POST /api/v1/reset on the webmail listener: {"deleted":N}.
func (wm *webmail) handleReset(w http.ResponseWriter, r *http.Request) {
	n, err := wm.s.Reset()
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintf(w, "{\"error\":%q}\n", err.Error())
		return
	}
	fmt.Fprintf(w, "{\"deleted\":%d}\n", n)
}
