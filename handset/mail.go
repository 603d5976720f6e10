package handset

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"
)

// MailState is the state of the handset's mail connection.
type MailState string

// The mail connection states reported by the device object.
const (
	MailOff          MailState = "off" // no mail integration configured or started
	MailConnecting   MailState = "connecting"
	MailIdling       MailState = "idling"
	MailPolling      MailState = "polling"
	MailLockedOut    MailState = "locked-out"
	MailBackoff      MailState = "backoff"
	MailDisconnected MailState = "disconnected"
	MailAuthFailed   MailState = "auth-failed"
)

// Disconnect records why the mail connection last ended.
type Disconnect struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// MailStatus is the mail connection as the device reports it.
type MailStatus struct {
	State          MailState   `json:"state"`
	Protocol       string      `json:"protocol,omitempty"` // imap, pop3
	Server         string      `json:"server,omitempty"`
	Reconnects     int         `json:"reconnects"`
	LastDisconnect *Disconnect `json:"last_disconnect,omitempty"`
	// RetryAt is when the next attempt is due while in backoff or locked-out.
	RetryAt time.Time `json:"retry_at,omitzero"`
}

// MailStatus returns the mail connection status.
func (h *Handset) MailStatus() MailStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mail
}

// UpdateMail changes the mail status under the handset's lock. It emits no event: the
// agent emits the event that explains the change.
func (h *Handset) UpdateMail(f func(*MailStatus)) {
	h.mu.Lock()
	f(&h.mail)
	h.mu.Unlock()
}

// MailSync is the mail integration's sync position, persisted across restarts.
type MailSync struct {
	UIDValidity uint32 `json:"uid_validity"`
	LastUID     uint32 `json:"last_uid"`
	// POP3Seen holds the UIDLs already downloaded over POP3.
	POP3Seen []string `json:"pop3_seen,omitempty"`
}

// MailSync returns the persisted sync position.
func (h *Handset) MailSync() MailSync {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.sync
	s.POP3Seen = append([]string(nil), s.POP3Seen...)
	return s
}

// SetMailSync persists the sync position.
func (h *Handset) SetMailSync(s MailSync) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sync = s
	return h.writeLocked(recSync, s)
}

// MessageKind tells e-mail from browser messages.
type MessageKind string

// Message kinds.
const (
	KindEmail   MessageKind = "email"
	KindBrowser MessageKind = "browser"
)

// Message is one entry in the message list.
type Message struct {
	ID         string      `json:"id"`
	Kind       MessageKind `json:"kind"`
	From       string      `json:"from"`
	Subject    string      `json:"subject"`
	ReceivedAt time.Time   `json:"received_at"`
	Read       bool        `json:"read"`
	// Key identifies the message at its source (for example "imap:UIDVALIDITY:UID",
	// "pop3:UIDL" or a Message-ID), so a message is never listed twice.
	Key string `json:"key,omitempty"`
	// URL is the page of a browser message.
	URL string `json:"url,omitempty"`
	// ContentType and Text: the body as received and as rendered for the screen.
	ContentType string `json:"content_type,omitempty"`
	Text        string `json:"text,omitempty"`
	// Links are the numbered references of a rendered page.
	Links []string `json:"links,omitempty"`
	// Attachments are an e-mail's parts that are not shown as text, listed by name and
	// size.
	Attachments []Attachment `json:"attachments,omitempty"`
	// Size is the raw content size in bytes.
	Size int `json:"size"`
}

// Attachment is a part of an e-mail the handset lists rather than shows.
type Attachment struct {
	// Name is the file name the sender gave, "" when none.
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	// Size is the decoded size in bytes.
	Size int `json:"size"`
}

// AddMessage adds m to the message list, assigning its ID and time when empty. It returns
// false, and adds nothing, when a message with the same Key is already listed.
func (h *Handset) AddMessage(m Message) (Message, bool, error) {
	h.mu.Lock()
	if m.Key != "" {
		if id, ok := h.msgKeys[m.Key]; ok {
			existing := *h.findMessageLocked(id)
			h.mu.Unlock()
			return existing, false, nil
		}
	}
	h.nextID++
	m.ID = strconv.FormatUint(h.nextID, 10)
	if m.ReceivedAt.IsZero() {
		m.ReceivedAt = h.now().UTC()
	}
	if err := h.writeLocked(recMessage, m); err != nil {
		h.nextID--
		h.mu.Unlock()
		return Message{}, false, err
	}
	h.applyMessageLocked(&m)
	h.mu.Unlock()
	kind := EventMailNew
	text := fmt.Sprintf("new mail from %s: %s", m.From, m.Subject)
	if m.Kind == KindBrowser {
		kind = EventPushMessage
		text = fmt.Sprintf("browser message: %s", m.Subject)
	}
	h.Emit(kind, text, map[string]string{"id": m.ID, "subject": m.Subject, "from": m.From})
	return m, true, nil
}

func (h *Handset) applyMessageLocked(m *Message) {
	cp := *m
	h.messages = append(h.messages, &cp)
	if m.Key != "" {
		h.msgKeys[m.Key] = m.ID
	}
	if n, err := strconv.ParseUint(m.ID, 10, 64); err == nil && n > h.nextID {
		h.nextID = n
	}
	// Full: the oldest read message goes first, then the oldest. Replaying the journal
	// makes the same choices, since read marks come back in the order they were made.
	for len(h.messages) > h.maxMsgs {
		i := slices.IndexFunc(h.messages, func(m *Message) bool { return m.Read })
		if i < 0 {
			i = 0
		}
		if k := h.messages[i].Key; k != "" {
			delete(h.msgKeys, k)
		}
		h.messages = slices.Delete(h.messages, i, i+1)
	}
}

func (h *Handset) findMessageLocked(id string) *Message {
	for _, m := range h.messages {
		if m.ID == id {
			return m
		}
	}
	return nil
}

// HasMessageKey reports whether a message with that source key is listed.
func (h *Handset) HasMessageKey(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.msgKeys[key]
	return ok
}

// Messages returns the message list, newest first.
func (h *Handset) Messages() []Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Message, len(h.messages))
	for i, m := range h.messages {
		out[len(h.messages)-1-i] = *m
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ReceivedAt.After(out[j].ReceivedAt) })
	return out
}

// Message returns one message.
func (h *Handset) Message(id string) (Message, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.findMessageLocked(id)
	if m == nil {
		return Message{}, fmt.Errorf("message %s: %w", id, ErrNotFound)
	}
	return *m, nil
}

// OpenMessage marks a message read and returns it.
func (h *Handset) OpenMessage(id string) (Message, error) {
	h.mu.Lock()
	m := h.findMessageLocked(id)
	if m == nil {
		h.mu.Unlock()
		return Message{}, fmt.Errorf("message %s: %w", id, ErrNotFound)
	}
	wasRead := m.Read
	if !wasRead {
		if err := h.writeLocked(recMessageRead, m.ID); err != nil {
			h.mu.Unlock()
			return Message{}, err
		}
		m.Read = true
	}
	out := *m
	var page CacheEntry
	cached := false
	if e, ok := h.cache[out.URL]; ok && out.URL != "" && !h.expiredLocked(e) {
		page, cached = *e, true
	}
	sw, fetch, in := h.software, h.fetch, h.coverage
	h.mu.Unlock()
	if !wasRead {
		h.Emit(EventMessageOpened, "opened: "+out.Subject, map[string]string{"id": out.ID})
	}
	if out.Kind != KindBrowser || out.URL == "" {
		return out, nil
	}
	// A browser message opens the browser on its page, as a channel does.
	fetched := !cached
	page, err := h.browse(out.URL, page, cached, sw, fetch, in, map[string]string{"id": out.ID, "subject": out.Subject})
	if err != nil {
		return out, err
	}
	if fetched && page.URL != "" {
		out.Text, out.Links, out.ContentType = page.Text, page.Links, page.ContentType
	}
	return out, nil
}
