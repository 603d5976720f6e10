// Adapted from github.com/emersion/go-imap/v2 imapserver/imapmemserver (v2.0.0-beta.8),
// MIT License, Copyright (c) 2013 The Go-IMAP Authors, (c) 2016 Proton Technologies AG,
// (c) 2023 Simon Ser. Changed to persist every change through a Store before it is
// acknowledged.

package imapmem

import (
	"github.com/bbsim/bbsim/mailserver/internal/goimap/imapserver"
	"github.com/emersion/go-imap/v2"
)

type (
	user    = User
	mailbox = MailboxView
)

// UserSession represents a session tied to a specific user.
//
// UserSession implements imapserver.Session. Typically, a UserSession pointer
// is embedded into a larger struct which overrides Login.
type UserSession struct {
	*user    // immutable
	*mailbox // may be nil
}

var _ imapserver.SessionIMAP4rev2 = (*UserSession)(nil)

// NewUserSession creates a new user session.
func NewUserSession(user *User) *UserSession {
	return &UserSession{user: user}
}

func (sess *UserSession) Close() error {
	if sess != nil && sess.mailbox != nil {
		sess.mailbox.Close()
	}
	return nil
}

func (sess *UserSession) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	mbox, err := sess.user.mailbox(name)
	if err != nil {
		return nil, err
	}
	mbox.mutex.Lock()
	defer mbox.mutex.Unlock()
	sess.mailbox = mbox.NewView()
	return mbox.selectDataLocked(), nil
}

func (sess *UserSession) Unselect() error {
	sess.mailbox.Close()
	sess.mailbox = nil
	return nil
}

func (sess *UserSession) Copy(numSet imap.NumSet, destName string) (*imap.CopyData, error) {
	dest, err := sess.user.mailbox(destName)
	if err != nil {
		return nil, &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeTryCreate,
			Text: "No such mailbox",
		}
	} else if sess.mailbox != nil && dest == sess.mailbox.Mailbox {
		return nil, &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Text: "Source and destination mailboxes are identical",
		}
	}

	sess.mailbox.mutex.Lock()
	err = sess.mailbox.checkSeqSetLocked(numSet)
	sess.mailbox.mutex.Unlock()
	if err != nil {
		return nil, err
	}

	var sourceUIDs, destUIDs imap.UIDSet
	var copyErr error
	sess.mailbox.forEach(numSet, func(seqNum uint32, msg *message) {
		if copyErr != nil {
			return
		}
		appendData, err := dest.copyMsg(msg)
		if err != nil {
			copyErr = err
			return
		}
		sourceUIDs.AddNum(msg.uid)
		destUIDs.AddNum(appendData.UID)
	})
	if copyErr != nil {
		return nil, copyErr
	}
	if len(sourceUIDs) == 0 {
		// Nothing matched (UIDs that are gone): OK without COPYUID, as Dovecot answers.
		return nil, nil
	}

	return &imap.CopyData{
		UIDValidity: dest.uidValidity,
		SourceUIDs:  sourceUIDs,
		DestUIDs:    destUIDs,
	}, nil
}

func (sess *UserSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, destName string) error {
	dest, err := sess.user.mailbox(destName)
	if err != nil {
		return &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeTryCreate,
			Text: "No such mailbox",
		}
	} else if sess.mailbox != nil && dest == sess.mailbox.Mailbox {
		return &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Text: "Source and destination mailboxes are identical",
		}
	}

	sess.mailbox.mutex.Lock()
	defer sess.mailbox.mutex.Unlock()
	if err := sess.mailbox.checkSeqSetLocked(numSet); err != nil {
		return err
	}

	var sourceUIDs, destUIDs imap.UIDSet
	expunged := make(map[*message]struct{})
	var copyErr error
	sess.mailbox.forEachLocked(numSet, func(seqNum uint32, msg *message) {
		if copyErr != nil {
			return
		}
		appendData, err := dest.copyMsg(msg)
		if err != nil {
			copyErr = err
			return
		}
		sourceUIDs.AddNum(msg.uid)
		destUIDs.AddNum(appendData.UID)
		expunged[msg] = struct{}{}
	})
	_, err = sess.mailbox.expungeLocked(expunged)
	if err == nil {
		err = copyErr
	}
	if err != nil {
		return err
	}
	if len(sourceUIDs) == 0 {
		// Nothing matched: OK without COPYUID (an empty set cannot be written).
		return nil
	}

	// The EXPUNGE responses are already queued for this session too, and go out when the
	// library polls before the tagged OK; writing them here as well sent "* 0 EXPUNGE".
	return w.WriteCopyData(&imap.CopyData{
		UIDValidity: dest.uidValidity,
		SourceUIDs:  sourceUIDs,
		DestUIDs:    destUIDs,
	})
}

func (sess *UserSession) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if sess.mailbox == nil {
		return nil
	}
	return sess.mailbox.Poll(w, allowExpunge)
}

func (sess *UserSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if sess.mailbox == nil {
		return nil // TODO
	}
	return sess.mailbox.Idle(w, stop)
}
