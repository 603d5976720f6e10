package mailserver

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// spillBytes is the size over which a message arriving over SMTP is spilled to a file in
// the spool directory while it waits for its group commit, and is not kept in memory
// afterwards either: the mailbox reads it back from the store when a client asks for it.
// Smaller messages, nearly all of them, stay in memory, where they are served from.
const spillBytes = 1 << 20

// spoolDir is where spilled messages wait, under the data directory. What it holds at
// start-up was never answered 250, and goes.
func spoolDir(dataDir string) string { return filepath.Join(dataDir, "spool") }

// spooled is a message's text as it waits for the store: in memory, or in a spool file.
type spooled struct {
	buf  []byte
	path string
	size int64
}

// remove deletes the spool file, if any; the store has read it by the time the delivery
// returns.
func (m spooled) remove() {
	if m.path != "" {
		os.Remove(m.path)
	}
}

// scratch buffers for reading messages, so that the next message's read does not grow a
// buffer afresh; what is kept is copied out at its exact size.
var scratch = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// spool reads a message from r, preceded by head unless the message begins with head's
// first field name, into memory up to spillBytes and beyond that into a spool file.
func (s *Server) spool(r io.Reader, head []byte) (spooled, error) {
	buf := scratch.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 64<<10 { // a large message's buffer is not kept for the next
			scratch.Put(buf)
		}
	}()
	_, err := io.CopyN(buf, r, spillBytes+1)
	if err != nil && err != io.EOF {
		return spooled{}, err
	}
	if name, _, ok := bytes.Cut(head, []byte(":")); ok && bytes.HasPrefix(buf.Bytes(), append(name, ':')) {
		head = nil // the message has its own
	}
	if err == io.EOF {
		msg := make([]byte, len(head)+buf.Len())
		copy(msg[copy(msg, head):], buf.Bytes())
		return spooled{buf: msg, size: int64(len(msg))}, nil
	}
	f, err := os.CreateTemp(spoolDir(s.opts.DataDir), "smtp-*.eml")
	if err != nil {
		return spooled{}, fmt.Errorf("spool message: %w", err)
	}
	m := spooled{path: f.Name(), size: int64(len(head) + buf.Len())}
	_, err = f.Write(head)
	if err == nil {
		_, err = f.Write(buf.Bytes())
	}
	if err == nil {
		var rest int64
		rest, err = io.Copy(f, r)
		m.size += rest
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("spool message: %w", cerr)
	}
	if err != nil {
		m.remove()
		return spooled{}, err
	}
	return m, nil
}
