// Adapted from github.com/emersion/go-imap/v2 imapserver/imapmemserver (v2.0.0-beta.8),
// MIT License, Copyright (c) 2013 The Go-IMAP Authors, (c) 2016 Proton Technologies AG,
// (c) 2023 Simon Ser. Changed to persist every change through a Store before it is
// acknowledged.

package imapmem

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/bbsim/bbsim/mailserver/internal/goimap/imapserver"
	"github.com/emersion/go-imap/v2"
)

// Mailbox is an in-memory mailbox.
//
// The same mailbox can be shared between multiple connections and multiple
// users.
type Mailbox struct {
	tracker     *imapserver.MailboxTracker
	uidValidity uint32
	store       Store // nil: memory only

	mutex      sync.Mutex
	name       string
	subscribed bool
	specialUse []imap.MailboxAttr
	l          []*message
	pending    []*pendingMsg // appended, waiting for the store, in UID order
	uidNext    imap.UID

	idleMu sync.Mutex
	idlers map[chan struct{}]struct{} // sessions in IDLE on this mailbox
}

// wakeIdlers tells every session in IDLE that its tracker has updates queued. It is called
// after each update is queued with the library's tracker, whose own IDLE wake-up misses
// updates queued before the idler registered.
func (mbox *Mailbox) wakeIdlers() {
	mbox.idleMu.Lock()
	defer mbox.idleMu.Unlock()
	for ch := range mbox.idlers {
		select {
		case ch <- struct{}{}:
		default: // already has a wake-up pending
		}
	}
}

// NewMailbox creates a new mailbox.
func NewMailbox(name string, uidValidity uint32) *Mailbox {
	return newMailbox(name, uidValidity, nil)
}

func newMailbox(name string, uidValidity uint32, store Store) *Mailbox {
	return &Mailbox{
		store:       store,
		tracker:     imapserver.NewMailboxTracker(0),
		uidValidity: uidValidity,
		name:        name,
		uidNext:     1,
	}
}

func (mbox *Mailbox) list(options *imap.ListOptions) *imap.ListData {
	mbox.mutex.Lock()
	defer mbox.mutex.Unlock()

	if options.SelectSubscribed && !mbox.subscribed {
		return nil
	}
	if options.SelectSpecialUse && len(mbox.specialUse) == 0 {
		return nil
	}

	data := imap.ListData{
		Mailbox: mbox.name,
		Delim:   mailboxDelim,
	}
	if mbox.subscribed {
		data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
	}
	if (options.ReturnSpecialUse || options.SelectSpecialUse) && len(mbox.specialUse) > 0 {
		data.Attrs = append(data.Attrs, mbox.specialUse...)
	}
	if options.ReturnStatus != nil {
		data.Status = mbox.statusDataLocked(options.ReturnStatus)
	}
	return &data
}

// StatusData returns data for the STATUS command.
func (mbox *Mailbox) StatusData(options *imap.StatusOptions) *imap.StatusData {
	mbox.mutex.Lock()
	defer mbox.mutex.Unlock()
	return mbox.statusDataLocked(options)
}

func (mbox *Mailbox) statusDataLocked(options *imap.StatusOptions) *imap.StatusData {
	data := imap.StatusData{Mailbox: mbox.name}
	if options.NumMessages {
		num := uint32(len(mbox.l))
		data.NumMessages = &num
	}
	if options.UIDNext {
		data.UIDNext = mbox.uidNext
	}
	if options.UIDValidity {
		data.UIDValidity = mbox.uidValidity
	}
	if options.NumUnseen {
		num := uint32(len(mbox.l)) - mbox.countByFlagLocked(imap.FlagSeen)
		data.NumUnseen = &num
	}
	if options.NumDeleted {
		num := mbox.countByFlagLocked(imap.FlagDeleted)
		data.NumDeleted = &num
	}
	if options.Size {
		size := mbox.sizeLocked()
		data.Size = &size
	}
	if options.NumRecent {
		num := uint32(0)
		data.NumRecent = &num
	}
	return &data
}

func (mbox *Mailbox) countByFlagLocked(flag imap.Flag) uint32 {
	var n uint32
	for _, msg := range mbox.l {
		if msg.flags.has(flag) {
			n++
		}
	}
	return n
}

func (mbox *Mailbox) sizeLocked() int64 {
	var size int64
	for _, msg := range mbox.l {
		size += msg.size
	}
	return size
}

// appendLiteral stores an APPEND literal, but only one that arrived whole: a connection
// that ends inside the literal stores nothing (the reader then just ends early).
func (mbox *Mailbox) appendLiteral(r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	// The buffer grows with what arrives rather than with what the client announced.
	var buf bytes.Buffer
	if n, err := io.CopyN(&buf, r, r.Size()); err != nil {
		return nil, fmt.Errorf("append: literal cut off after %d of %d bytes: %w", n, r.Size(), err)
	}
	return mbox.appendBytes(buf.Bytes(), options)
}

func (mbox *Mailbox) copyMsg(msg *message) (*imap.AppendData, error) {
	buf, err := msg.text()
	if err != nil {
		return nil, err
	}
	return mbox.appendBytes(buf, &imap.AppendOptions{
		Time:  msg.t,
		Flags: msg.flagList(),
	})
}

// Append stores a new message in the mailbox (through the Store first) and tells every
// session that has it selected, idling ones at once.
func (mbox *Mailbox) Append(buf []byte, options *imap.AppendOptions) (*imap.AppendData, error) {
	if options == nil {
		options = &imap.AppendOptions{}
	}
	return mbox.appendBytes(buf, options)
}

// AppendFile is Append for a large message spilled to the file at path, of size bytes:
// the Store reads the file when it commits the message, and the mailbox then keeps no copy
// in memory but reads the text back from the Store when asked for it. The file may go
// once AppendFile returns.
func (mbox *Mailbox) AppendFile(path string, size int64, options *imap.AppendOptions) (*imap.AppendData, error) {
	if options == nil {
		options = &imap.AppendOptions{}
	}
	if mbox.store == nil {
		buf, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		return mbox.appendBytes(buf, options)
	}
	return mbox.appendBody(Body{Path: path, Size: size}, options)
}

func (mbox *Mailbox) appendBytes(buf []byte, options *imap.AppendOptions) (*imap.AppendData, error) {
	if buf == nil {
		buf = []byte{} // nil is for a text only the store keeps
	}
	return mbox.appendBody(Body{Buf: buf, Size: int64(len(buf))}, options)
}

func (mbox *Mailbox) appendBody(body Body, options *imap.AppendOptions) (*imap.AppendData, error) {
	msg := &message{
		flags: flagSet{},
		buf:   body.Buf,
		size:  body.Size,
	}
	if body.Buf == nil {
		msg.keeper = mbox.store
	}

	if options.Time.IsZero() {
		msg.t = time.Now()
	} else {
		msg.t = options.Time
	}

	for _, flag := range options.Flags {
		msg.flags.add(flag)
	}

	mbox.mutex.Lock()
	msg.uid = mbox.uidNext
	mbox.uidNext++
	if mbox.store == nil {
		mbox.l = append(mbox.l, msg)
		mbox.tracker.QueueNumMessages(uint32(len(mbox.l)))
		mbox.wakeIdlers()
		mbox.mutex.Unlock()
		return &imap.AppendData{UIDValidity: mbox.uidValidity, UID: msg.uid}, nil
	}
	// The message is queued with the store under the lock, so that messages reach the
	// store, and then the mailbox, in the order of their UIDs. The lock is not held while
	// the store commits: messages appended meanwhile share the commit.
	p := &pendingMsg{msg: msg, done: make(chan struct{})}
	if err := mbox.store.Insert(mbox.name, msg.uid, body, msg.t, msg.flagList(), p.settle); err != nil {
		mbox.mutex.Unlock()
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug, Text: "Cannot store the message: " + err.Error()}
	}
	mbox.pending = append(mbox.pending, p)
	mbox.mutex.Unlock()

	<-p.done
	mbox.mutex.Lock()
	mbox.showSettledLocked()
	mbox.mutex.Unlock()
	if p.err != nil {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug, Text: "Cannot store the message: " + p.err.Error()}
	}
	return &imap.AppendData{UIDValidity: mbox.uidValidity, UID: msg.uid}, nil
}

// pendingMsg is a message waiting for the store's commit.
type pendingMsg struct {
	msg  *message
	err  error         // the commit's outcome, set before done is closed
	done chan struct{} // closed once the store has answered
}

// settle records the store's answer; it runs on the store's goroutine.
func (p *pendingMsg) settle(ref int64, err error) {
	p.msg.ref, p.err = ref, err
	close(p.done)
}

// showSettledLocked moves the messages whose commit has been answered, from the oldest,
// into the mailbox (a failed one is dropped, its UID left unused), and tells the sessions.
// It stops at the first still waiting, so that messages appear in the order of their UIDs
// whichever of their senders wakes first.
func (mbox *Mailbox) showSettledLocked() {
	n, shown := 0, false
	for _, p := range mbox.pending {
		if !isClosed(p.done) {
			break
		}
		n++
		if p.err == nil {
			mbox.l = append(mbox.l, p.msg)
			shown = true
		}
	}
	if n == 0 {
		return
	}
	clear(mbox.pending[:n])
	mbox.pending = mbox.pending[n:]
	if shown {
		mbox.tracker.QueueNumMessages(uint32(len(mbox.l)))
		mbox.wakeIdlers()
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Load adds a message read back from the Store at start-up, without writing it again.
func (mbox *Mailbox) Load(uid imap.UID, buf []byte, t time.Time, flags []imap.Flag) {
	if buf == nil {
		buf = []byte{}
	}
	mbox.load(&message{uid: uid, buf: buf, size: int64(len(buf)), t: t, flags: flagSet{}}, flags)
}

// LoadStored is Load for a large message that stays in the Store, of size bytes, read
// back by ref (as Store.Body takes it) when asked for.
func (mbox *Mailbox) LoadStored(uid imap.UID, size, ref int64, t time.Time, flags []imap.Flag) {
	mbox.load(&message{uid: uid, size: size, keeper: mbox.store, ref: ref, t: t, flags: flagSet{}}, flags)
}

func (mbox *Mailbox) load(msg *message, flags []imap.Flag) {
	uid := msg.uid
	for _, f := range flags {
		msg.flags.add(f)
	}
	mbox.mutex.Lock()
	defer mbox.mutex.Unlock()
	mbox.l = append(mbox.l, msg)
	if uid >= mbox.uidNext {
		mbox.uidNext = uid + 1
	}
	mbox.tracker.QueueNumMessages(uint32(len(mbox.l)))
	mbox.wakeIdlers()
}

// SetUIDNext raises the next UID (it never goes down), as kept by the Store.
func (mbox *Mailbox) SetUIDNext(uid imap.UID) {
	mbox.mutex.Lock()
	defer mbox.mutex.Unlock()
	if uid > mbox.uidNext {
		mbox.uidNext = uid
	}
}

// UIDValidity is the mailbox's UIDVALIDITY.
func (mbox *Mailbox) UIDValidity() uint32 { return mbox.uidValidity }

// Info describes one message for POP3 and webmail.
type Info struct {
	UID   imap.UID
	Size  int
	Time  time.Time
	Flags []imap.Flag
}

// Messages lists the mailbox's messages in order.
func (mbox *Mailbox) Messages() []Info {
	mbox.mutex.Lock()
	defer mbox.mutex.Unlock()
	out := make([]Info, len(mbox.l))
	for i, m := range mbox.l {
		out[i] = Info{UID: m.uid, Size: int(m.size), Time: m.t, Flags: m.flagList()}
	}
	return out
}

// Body returns a message's raw text (nil when the Store cannot read it back).
func (mbox *Mailbox) Body(uid imap.UID) ([]byte, bool) {
	mbox.mutex.Lock()
	var msg *message
	for _, m := range mbox.l {
		if m.uid == uid {
			msg = m
			break
		}
	}
	mbox.mutex.Unlock()
	if msg == nil {
		return nil, false
	}
	return msg.textOrEmpty(), true
}

// AddFlag sets a flag on a message and tells the sessions that have it selected.
func (mbox *Mailbox) AddFlag(uid imap.UID, flag imap.Flag) {
	mbox.mutex.Lock()
	defer mbox.mutex.Unlock()
	for i, m := range mbox.l {
		if m.uid == uid {
			if m.flags.has(flag) {
				return
			}
			m.flags.add(flag)
			mbox.persistFlagsLocked(m)
			mbox.tracker.QueueMessageFlags(uint32(i)+1, m.uid, m.flagList(), nil)
			mbox.wakeIdlers()
			return
		}
	}
}

// Remove deletes messages by UID (a POP3 DELE at QUIT) and tells the sessions that have
// the mailbox selected with EXPUNGE. It returns how many were still there.
func (mbox *Mailbox) Remove(uids []imap.UID) (int, error) {
	set := map[imap.UID]bool{}
	for _, u := range uids {
		set[u] = true
	}
	mbox.mutex.Lock()
	defer mbox.mutex.Unlock()
	expunged := map[*message]struct{}{}
	for _, m := range mbox.l {
		if set[m.uid] {
			expunged[m] = struct{}{}
		}
	}
	_, err := mbox.expungeLocked(expunged)
	if err != nil {
		return 0, err
	}
	return len(expunged), nil
}

func (mbox *Mailbox) persistFlagsLocked(m *message) {
	if mbox.store != nil {
		mbox.store.SetFlags(mbox.name, m.uid, m.flagList())
	}
}

func (mbox *Mailbox) rename(newName string) {
	mbox.mutex.Lock()
	mbox.name = newName
	mbox.mutex.Unlock()
}

// SetSubscribed changes the subscription state of this mailbox.
func (mbox *Mailbox) SetSubscribed(subscribed bool) {
	mbox.mutex.Lock()
	mbox.subscribed = subscribed
	mbox.mutex.Unlock()
}

func (mbox *Mailbox) selectDataLocked() *imap.SelectData {
	flags := mbox.flagsLocked()

	permanentFlags := make([]imap.Flag, len(flags))
	copy(permanentFlags, flags)
	permanentFlags = append(permanentFlags, imap.FlagWildcard)

	// TODO: skip if IMAP4rev1 is disabled by the server, or IMAP4rev2 is
	// enabled by the client
	firstUnseenSeqNum := mbox.firstUnseenSeqNumLocked()

	return &imap.SelectData{
		Flags:             flags,
		PermanentFlags:    permanentFlags,
		NumMessages:       uint32(len(mbox.l)),
		FirstUnseenSeqNum: firstUnseenSeqNum,
		UIDNext:           mbox.uidNext,
		UIDValidity:       mbox.uidValidity,
	}
}

func (mbox *Mailbox) firstUnseenSeqNumLocked() uint32 {
	for i, msg := range mbox.l {
		seqNum := uint32(i) + 1
		if !msg.flags.has(imap.FlagSeen) {
			return seqNum
		}
	}
	return 0
}

func (mbox *Mailbox) flagsLocked() []imap.Flag {
	// The system flags are always listed, as Dovecot does, so that clients that check
	// FLAGS and PERMANENTFLAGS before they set one find it there.
	all := flagSet{}
	for _, f := range systemFlags {
		all.add(f)
	}
	for _, msg := range mbox.l {
		for _, f := range msg.flags {
			all.add(f)
		}
	}
	return all.list()
}

func (mbox *Mailbox) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	expunged := make(map[*message]struct{})
	mbox.mutex.Lock()
	for _, msg := range mbox.l {
		if uids != nil && !uids.Contains(msg.uid) {
			continue
		}
		if msg.flags.has(imap.FlagDeleted) {
			expunged[msg] = struct{}{}
		}
	}
	mbox.mutex.Unlock()

	if len(expunged) == 0 {
		return nil
	}

	mbox.mutex.Lock()
	_, err := mbox.expungeLocked(expunged)
	mbox.mutex.Unlock()

	return err
}

func (mbox *Mailbox) expungeLocked(expunged map[*message]struct{}) (seqNums []uint32, err error) {
	if len(expunged) == 0 {
		return nil, nil
	}
	if mbox.store != nil {
		uids := make([]imap.UID, 0, len(expunged))
		for m := range expunged {
			uids = append(uids, m.uid)
		}
		if err := mbox.store.Delete(mbox.name, uids); err != nil {
			return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug, Text: "Cannot expunge: " + err.Error()}
		}
	}

	// Iterate in reverse order, to keep sequence numbers consistent
	var filtered []*message
	for i := len(mbox.l) - 1; i >= 0; i-- {
		msg := mbox.l[i]
		if _, ok := expunged[msg]; ok {
			seqNum := uint32(i) + 1
			seqNums = append(seqNums, seqNum)
			mbox.tracker.QueueExpunge(seqNum)
			mbox.wakeIdlers()
		} else {
			filtered = append(filtered, msg)
		}
	}

	// Reverse filtered
	for i := 0; i < len(filtered)/2; i++ {
		j := len(filtered) - i - 1
		filtered[i], filtered[j] = filtered[j], filtered[i]
	}

	mbox.l = filtered

	return seqNums, nil
}

// NewView creates a new view into this mailbox.
//
// Callers must call MailboxView.Close once they are done with the mailbox view.
func (mbox *Mailbox) NewView() *MailboxView {
	return &MailboxView{
		Mailbox: mbox,
		tracker: mbox.tracker.NewSession(),
	}
}

// A MailboxView is a view into a mailbox.
//
// Each view has its own queue of pending unilateral updates.
//
// Once the mailbox view is no longer used, Close must be called.
//
// Typically, a new MailboxView is created for each IMAP connection in the
// selected state.
type MailboxView struct {
	*Mailbox
	tracker   *imapserver.SessionTracker
	searchRes imap.UIDSet
}

// Close releases the resources allocated for the mailbox view.
func (mbox *MailboxView) Close() {
	mbox.tracker.Close()
}

func (mbox *MailboxView) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	markSeen := false
	for _, bs := range options.BodySection {
		if !bs.Peek {
			markSeen = true
			break
		}
	}

	var err error
	mbox.forEach(numSet, func(seqNum uint32, msg *message) {
		if err != nil {
			return
		}

		if markSeen && !msg.flags.has(imap.FlagSeen) {
			msg.flags.add(imap.FlagSeen)
			mbox.persistFlagsLocked(msg)
			mbox.Mailbox.tracker.QueueMessageFlags(seqNum, msg.uid, msg.flagList(), nil)
			mbox.Mailbox.wakeIdlers()
		}

		respWriter := w.CreateMessage(mbox.tracker.EncodeSeqNum(seqNum))
		err = msg.fetch(respWriter, options)
	})
	return err
}

func (mbox *MailboxView) Search(numKind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	mbox.mutex.Lock()
	defer mbox.mutex.Unlock()

	mbox.staticSearchCriteria(criteria)

	var (
		data   imap.SearchData
		seqSet imap.SeqSet
		uidSet imap.UIDSet
	)
	for i, msg := range mbox.l {
		seqNum := mbox.tracker.EncodeSeqNum(uint32(i) + 1)

		if !msg.search(seqNum, criteria) {
			continue
		}

		// Always populate the UID set, since it may be saved later for SEARCHRES
		uidSet.AddNum(msg.uid)

		var num uint32
		switch numKind {
		case imapserver.NumKindSeq:
			if seqNum == 0 {
				continue
			}
			seqSet.AddNum(seqNum)
			num = seqNum
		case imapserver.NumKindUID:
			num = uint32(msg.uid)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		if data.Max == 0 || num > data.Max {
			data.Max = num
		}
		data.Count++
	}

	switch numKind {
	case imapserver.NumKindSeq:
		data.All = seqSet
	case imapserver.NumKindUID:
		data.All = uidSet
	}

	if options.ReturnSave {
		mbox.searchRes = uidSet
	}

	return &data, nil
}

func (mbox *MailboxView) staticSearchCriteria(criteria *imap.SearchCriteria) {
	seqNums := make([]imap.SeqSet, 0, len(criteria.SeqNum))
	for _, seqSet := range criteria.SeqNum {
		numSet := mbox.staticNumSet(seqSet)
		switch numSet := numSet.(type) {
		case imap.SeqSet:
			seqNums = append(seqNums, numSet)
		case imap.UIDSet: // can happen with SEARCHRES
			criteria.UID = append(criteria.UID, numSet)
		}
	}
	criteria.SeqNum = seqNums

	for i, uidSet := range criteria.UID {
		criteria.UID[i] = mbox.staticNumSet(uidSet).(imap.UIDSet)
	}

	for i := range criteria.Not {
		mbox.staticSearchCriteria(&criteria.Not[i])
	}
	for i := range criteria.Or {
		for j := range criteria.Or[i] {
			mbox.staticSearchCriteria(&criteria.Or[i][j])
		}
	}
}

func (mbox *MailboxView) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	mbox.forEach(numSet, func(seqNum uint32, msg *message) {
		msg.store(flags)
		mbox.persistFlagsLocked(msg)
		mbox.Mailbox.tracker.QueueMessageFlags(seqNum, msg.uid, msg.flagList(), mbox.tracker)
		mbox.Mailbox.wakeIdlers()
	})
	if !flags.Silent {
		return mbox.Fetch(w, numSet, &imap.FetchOptions{Flags: true})
	}
	return nil
}

func (mbox *MailboxView) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	return mbox.tracker.Poll(w, allowExpunge)
}

// Idle writes the session's updates as they come until stop is closed. The idler registers
// before it writes what is already queued, so an update queued at any moment wakes it.
func (mbox *MailboxView) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	wake := make(chan struct{}, 1)
	mbox.Mailbox.idleMu.Lock()
	if mbox.Mailbox.idlers == nil {
		mbox.Mailbox.idlers = map[chan struct{}]struct{}{}
	}
	mbox.Mailbox.idlers[wake] = struct{}{}
	mbox.Mailbox.idleMu.Unlock()
	defer func() {
		mbox.Mailbox.idleMu.Lock()
		delete(mbox.Mailbox.idlers, wake)
		mbox.Mailbox.idleMu.Unlock()
	}()
	for {
		if err := mbox.tracker.Poll(w, true); err != nil {
			return err
		}
		select {
		case <-wake:
		case <-stop:
			return nil
		}
	}
}

func (mbox *MailboxView) forEach(numSet imap.NumSet, f func(seqNum uint32, msg *message)) {
	mbox.mutex.Lock()
	defer mbox.mutex.Unlock()
	mbox.forEachLocked(numSet, f)
}

func (mbox *MailboxView) forEachLocked(numSet imap.NumSet, f func(seqNum uint32, msg *message)) {
	// TODO: optimize

	numSet = mbox.staticNumSet(numSet)

	for i, msg := range mbox.l {
		seqNum := uint32(i) + 1

		var contains bool
		switch numSet := numSet.(type) {
		case imap.SeqSet:
			seqNum := mbox.tracker.EncodeSeqNum(seqNum)
			contains = seqNum != 0 && numSet.Contains(seqNum)
		case imap.UIDSet:
			contains = numSet.Contains(msg.uid)
		}
		if !contains {
			continue
		}

		f(seqNum, msg)
	}
}

// checkSeqSetLocked refuses message sequence numbers beyond the mailbox (RFC 3501 §9,
// seq-number): they are a client error, answered BAD with the reason. UIDs are not checked:
// a UID that no longer exists simply matches nothing.
func (mbox *MailboxView) checkSeqSetLocked(numSet imap.NumSet) error {
	seqSet, ok := numSet.(imap.SeqSet)
	if !ok {
		return nil
	}
	n := uint32(len(mbox.l))
	for _, r := range seqSet {
		for _, v := range []uint32{r.Start, r.Stop} {
			if v > n { // 0 is "*", the last message
				return &imap.Error{
					Type: imap.StatusResponseTypeBad,
					Code: imap.ResponseCodeClientBug,
					Text: fmt.Sprintf("Invalid message sequence number %d: the mailbox has %d messages", v, n),
				}
			}
		}
	}
	return nil
}

// staticNumSet converts a dynamic sequence set into a static one.
//
// This is necessary to properly handle the special symbol "*", which
// represents the maximum sequence number or UID in the mailbox.
//
// This function also handles the special SEARCHRES marker "$".
func (mbox *MailboxView) staticNumSet(numSet imap.NumSet) imap.NumSet {
	if imap.IsSearchRes(numSet) {
		return mbox.searchRes
	}

	switch numSet := numSet.(type) {
	case imap.SeqSet:
		max := uint32(len(mbox.l))
		for i := range numSet {
			r := &numSet[i]
			staticNumRange(&r.Start, &r.Stop, max)
		}
	case imap.UIDSet:
		max := uint32(mbox.uidNext) - 1
		for i := range numSet {
			r := &numSet[i]
			staticNumRange((*uint32)(&r.Start), (*uint32)(&r.Stop), max)
		}
	}

	return numSet
}

func staticNumRange(start, stop *uint32, max uint32) {
	dyn := false
	if *start == 0 {
		*start = max
		dyn = true
	}
	if *stop == 0 {
		*stop = max
		dyn = true
	}
	if dyn && *start > *stop {
		*start, *stop = *stop, *start
	}
}
