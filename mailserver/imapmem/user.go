// Adapted from github.com/emersion/go-imap/v2 imapserver/imapmemserver (v2.0.0-beta.8),
// MIT License, Copyright (c) 2013 The Go-IMAP Authors, (c) 2016 Proton Technologies AG,
// (c) 2023 Simon Ser. Changed to persist every change through a Store before it is
// acknowledged.

package imapmem

import (
	"crypto/subtle"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bbsim/bbsim/mailserver/internal/goimap/imapserver"
	"github.com/emersion/go-imap/v2"
)

const mailboxDelim rune = '/'

type User struct {
	username, password string
	store              Store // nil: memory only

	mutex           sync.Mutex
	mailboxes       map[string]*Mailbox
	prevUidValidity uint32
}

func NewUser(username, password string) *User {
	return NewStoredUser(username, password, nil)
}

// Store keeps a user's mailboxes. Every change goes through it before it is applied in
// memory and acknowledged; a nil Store keeps everything in memory.
type Store interface {
	// Insert queues a new message and returns at once; committed is called (on the store's
	// own goroutine, so it must not block) once the message is committed, with the
	// reference Body takes, or has failed. Inserts are committed in the order of the calls.
	Insert(mailbox string, uid imap.UID, body Body, t time.Time, flags []imap.Flag, committed func(ref int64, err error)) error
	// Body reads back the text of a message inserted from a file (Body.Path), which the
	// mailbox keeps out of memory.
	Body(ref int64) ([]byte, error)
	SetFlags(mailbox string, uid imap.UID, flags []imap.Flag) error
	Delete(mailbox string, uids []imap.UID) error
	CreateMailbox(name string, uidValidity uint32) error
	DeleteMailbox(name string) error
	RenameMailbox(oldName, newName string) error
}

// Body is a new message's text: in memory (Buf), or, for a large message, in the file at
// Path, of Size bytes, which the Store reads when it commits the message.
type Body struct {
	Buf  []byte
	Path string
	Size int64
}

// NewStoredUser creates a user whose changes go through store.
func NewStoredUser(username, password string, store Store) *User {
	return &User{
		store:     store,
		username:  username,
		password:  password,
		mailboxes: make(map[string]*Mailbox),
	}
}

func (u *User) Login(username, password string) error {
	if username != u.username {
		return imapserver.ErrAuthFailed
	}
	if subtle.ConstantTimeCompare([]byte(password), []byte(u.password)) != 1 {
		return imapserver.ErrAuthFailed
	}
	return nil
}

func (u *User) mailboxLocked(name string) (*Mailbox, error) {
	mbox := u.mailboxes[name]
	if mbox == nil {
		return nil, &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeNonExistent,
			Text: "No such mailbox",
		}
	}
	return mbox, nil
}

// AddMailbox adds a mailbox read back from the Store at start-up.
func (u *User) AddMailbox(name string, uidValidity uint32) *Mailbox {
	u.mutex.Lock()
	defer u.mutex.Unlock()
	mbox := newMailbox(name, uidValidity, u.store)
	u.mailboxes[name] = mbox
	if uidValidity > u.prevUidValidity {
		u.prevUidValidity = uidValidity
	}
	return mbox
}

// Mailbox returns the named mailbox.
func (u *User) Mailbox(name string) (*Mailbox, error) { return u.mailbox(name) }

// Username is the user's login.
func (u *User) Username() string { return u.username }

func (u *User) mailbox(name string) (*Mailbox, error) {
	u.mutex.Lock()
	defer u.mutex.Unlock()
	return u.mailboxLocked(name)
}

func (u *User) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	mbox, err := u.mailbox(name)
	if err != nil {
		return nil, err
	}
	return mbox.StatusData(options), nil
}

func (u *User) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	u.mutex.Lock()
	defer u.mutex.Unlock()

	// TODO: fail if ref doesn't exist

	if len(patterns) == 0 {
		return w.WriteList(&imap.ListData{
			Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect},
			Delim: mailboxDelim,
		})
	}

	var l []imap.ListData
	for name, mbox := range u.mailboxes {
		match := false
		for _, pattern := range patterns {
			match = imapserver.MatchList(name, mailboxDelim, ref, pattern)
			if match {
				break
			}
		}
		if !match {
			continue
		}

		data := mbox.list(options)
		if data != nil {
			l = append(l, *data)
		}
	}

	sort.Slice(l, func(i, j int) bool {
		return l[i].Mailbox < l[j].Mailbox
	})

	for _, data := range l {
		if err := w.WriteList(&data); err != nil {
			return err
		}
	}

	return nil
}

func (u *User) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	mbox, err := u.mailbox(mailbox)
	if err != nil {
		return nil, &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeTryCreate,
			Text: "No such mailbox",
		}
	}
	return mbox.appendLiteral(r, options)
}

func (u *User) Create(name string, options *imap.CreateOptions) error {
	u.mutex.Lock()
	defer u.mutex.Unlock()

	name = strings.TrimRight(name, string(mailboxDelim))

	if u.mailboxes[name] != nil {
		return &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeAlreadyExists,
			Text: "Mailbox already exists",
		}
	}

	// UIDVALIDITY must change if a mailbox is deleted and re-created with the
	// same name.
	u.prevUidValidity++
	if u.store != nil {
		if err := u.store.CreateMailbox(name, u.prevUidValidity); err != nil {
			return err
		}
	}
	u.mailboxes[name] = newMailbox(name, u.prevUidValidity, u.store)
	return nil
}

func (u *User) Delete(name string) error {
	u.mutex.Lock()
	defer u.mutex.Unlock()

	if _, err := u.mailboxLocked(name); err != nil {
		return err
	}
	if u.store != nil {
		if err := u.store.DeleteMailbox(name); err != nil {
			return err
		}
	}

	delete(u.mailboxes, name)
	return nil
}

func (u *User) Rename(oldName, newName string, options *imap.RenameOptions) error {
	u.mutex.Lock()
	defer u.mutex.Unlock()

	newName = strings.TrimRight(newName, string(mailboxDelim))

	mbox, err := u.mailboxLocked(oldName)
	if err != nil {
		return err
	}

	if u.mailboxes[newName] != nil {
		return &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeAlreadyExists,
			Text: "Mailbox already exists",
		}
	}

	if u.store != nil {
		if err := u.store.RenameMailbox(oldName, newName); err != nil {
			return err
		}
	}
	mbox.rename(newName)
	u.mailboxes[newName] = mbox
	delete(u.mailboxes, oldName)
	return nil
}

func (u *User) Subscribe(name string) error {
	mbox, err := u.mailbox(name)
	if err != nil {
		return err
	}
	mbox.SetSubscribed(true)
	return nil
}

func (u *User) Unsubscribe(name string) error {
	mbox, err := u.mailbox(name)
	if err != nil {
		return err
	}
	mbox.SetSubscribed(false)
	return nil
}

func (u *User) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{
		Personal: []imap.NamespaceDescriptor{{Delim: mailboxDelim}},
	}, nil
}
