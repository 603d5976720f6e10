package imapmem

import (
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// systemFlags are the flags of RFC 3501 §2.3.2 that clients may set, in their canonical
// case. Clients such as mbsync reject a system flag they do not recognise in that case.
var systemFlags = []imap.Flag{imap.FlagAnswered, imap.FlagDeleted, imap.FlagDraft, imap.FlagFlagged, imap.FlagSeen}

// flagSet is a message's flags. Flags compare without regard to case (RFC 3501 §2.3.2);
// system flags are kept in their canonical case, keywords in the case first given.
type flagSet map[string]imap.Flag

func flagKey(f imap.Flag) string { return strings.ToLower(string(f)) }

// canonicalFlag returns f with a system flag in its canonical case.
func canonicalFlag(f imap.Flag) imap.Flag {
	key := flagKey(f)
	for _, sf := range systemFlags {
		if flagKey(sf) == key {
			return sf
		}
	}
	return f
}

func (s flagSet) has(f imap.Flag) bool {
	_, ok := s[flagKey(f)]
	return ok
}

func (s flagSet) add(f imap.Flag) {
	if !s.has(f) {
		s[flagKey(f)] = canonicalFlag(f)
	}
}

func (s flagSet) del(f imap.Flag) { delete(s, flagKey(f)) }

func (s flagSet) list() []imap.Flag {
	l := make([]imap.Flag, 0, len(s))
	for _, f := range s {
		l = append(l, f)
	}
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	return l
}
