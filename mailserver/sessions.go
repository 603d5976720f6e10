package mailserver

// IdleSessions reports how many IMAP sessions of the account with this login are in IDLE
// as the store's locking sees them (marked just after the "+ idling" continuation went
// out): the sessions a polite disconnect would end. 0 for an unknown login.
func (s *Server) IdleSessions(login string) int {
	a := s.user(login)
	if a == nil {
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for ss := range a.sessions {
		if ss.idling {
			n++
		}
	}
	return n
}

// Sessions reports how many logged-in sessions, of any protocol, the account with this
// login has. 0 for an unknown login.
func (s *Server) Sessions(login string) int {
	a := s.user(login)
	if a == nil {
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.sessions)
}
