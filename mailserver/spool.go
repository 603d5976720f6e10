package mailserver

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

// spool reads a message from r, preceded by head unless the message begins with head's
// first field name, into memory up to spillBytes and beyond that into a spool file.
func (s *Server) spool(r io.Reader, head []byte) (spooled, error) {
	br := bufio.NewReader(r)
	var buf bytes.Buffer
	if name, _, ok := bytes.Cut(head, []byte(":")); ok {
		if start, _ := br.Peek(len(name) + 1); !bytes.Equal(start, append(name, ':')) {
			buf.Write(head)
		}
	}
	_, err := io.CopyN(&buf, br, spillBytes+1-int64(buf.Len()))
	if err == io.EOF {
		return spooled{buf: buf.Bytes(), size: int64(buf.Len())}, nil
	}
	if err != nil {
		return spooled{}, err
	}
	f, err := os.CreateTemp(spoolDir(s.opts.DataDir), "smtp-*.eml")
	if err != nil {
		return spooled{}, fmt.Errorf("spool message: %w", err)
	}
	m := spooled{path: f.Name()}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		m.remove()
		return spooled{}, fmt.Errorf("spool message: %w", err)
	}
	rest, err := io.Copy(f, br)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("spool message: %w", cerr)
	}
	if err != nil {
		m.remove()
		return spooled{}, err
	}
	m.size = int64(buf.Len()) + rest
	return m, nil
}
