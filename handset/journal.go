package handset

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/bbsim/bbsim/internal/statedir"
)

// The journal is an append-only file of JSON lines, one per state change, replayed on
// start and rewritten compactly when the handset opens. A line is written before the
// change is applied in memory, so what the handset shows is on disk.

const journalName = "handset.journal"

type recKind string

const (
	recMessage       recKind = "message"
	recMessageRead   recKind = "message-read"
	recSync          recKind = "sync"
	recChannel       recKind = "channel"
	recChannelRead   recKind = "channel-read"
	recChannelDelete recKind = "channel-delete"
	recCache         recKind = "cache"
	recApp           recKind = "app"
	recAppPush       recKind = "app-push"
	recEvent         recKind = "event"
	recSoftware      recKind = "software"
	recDeviceSecret  recKind = "device-secret"
)

type record struct {
	Op recKind         `json:"op"`
	V  json.RawMessage `json:"v"`
}

type journal struct {
	dir    string
	f      *os.File
	w      *bufio.Writer
	sync   bool
	writes int // records in the file
	live   int // records its last compaction wrote
}

// compactSlack is how many records beyond twice the live ones the journal may grow by
// before it is compacted while the handset runs (it is also compacted at every start).
const compactSlack = 2000

func openJournal(dir string, sync bool, replay func(record) error) (*journal, error) {
	if err := statedir.Mkdir(dir); err != nil {
		return nil, fmt.Errorf("handset state dir: %w", err)
	}
	path := filepath.Join(dir, journalName)
	if f, err := os.Open(path); err == nil {
		err := readJournal(f, replay)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("replay %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	f, err := statedir.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &journal{dir: dir, f: f, w: bufio.NewWriter(f), sync: sync}, nil
}

func readJournal(r io.Reader, replay func(record) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 64<<20)
	for sc.Scan() {
		var rec record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			// A torn last line after a crash: everything before it stands.
			continue
		}
		if err := replay(rec); err != nil {
			return err
		}
	}
	return sc.Err()
}

func (j *journal) write(op recKind, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	line, err := json.Marshal(record{Op: op, V: b})
	if err != nil {
		return err
	}
	j.w.Write(line)
	j.w.WriteByte('\n')
	j.writes++
	if err := j.w.Flush(); err != nil {
		return fmt.Errorf("write journal: %w", err)
	}
	if j.sync {
		return j.f.Sync()
	}
	return nil
}

func (j *journal) close() error {
	err := j.w.Flush()
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeLocked journals a change; it is a no-op for an in-memory handset.
func (h *Handset) writeLocked(op recKind, v any) error {
	if h.j == nil {
		return nil
	}
	// Superseded records (read marks, replaced channels, events beyond the history,
	// messages that made room) pile up: rewrite the journal as what is live. Before the
	// write, not after: the state then holds every record written so far, while the
	// record being written is applied only after it is on disk.
	if h.j.writes > 2*h.j.live+compactSlack {
		if err := h.compactLocked(); err != nil {
			return err
		}
	}
	return h.j.write(op, v)
}

// replay applies one journal record to the state (called before the handset is shared).
func (h *Handset) replay(rec record) error {
	switch rec.Op {
	case recMessage:
		var m Message
		if err := json.Unmarshal(rec.V, &m); err != nil {
			return err
		}
		if _, dup := h.msgKeys[m.Key]; m.Key != "" && dup {
			return nil
		}
		h.applyMessageLocked(&m)
	case recMessageRead:
		var id string
		if err := json.Unmarshal(rec.V, &id); err != nil {
			return err
		}
		if m := h.findMessageLocked(id); m != nil {
			m.Read = true
		}
	case recSync:
		return json.Unmarshal(rec.V, &h.sync)
	case recChannel:
		var c Channel
		if err := json.Unmarshal(rec.V, &c); err != nil {
			return err
		}
		h.applyChannelLocked(c)
	case recChannelRead:
		var id string
		if err := json.Unmarshal(rec.V, &id); err != nil {
			return err
		}
		if c := h.findChannelLocked(id); c != nil {
			c.Read = true
		}
	case recChannelDelete:
		var id string
		if err := json.Unmarshal(rec.V, &id); err != nil {
			return err
		}
		h.removeChannelLocked(id)
	case recCache:
		var e CacheEntry
		if err := json.Unmarshal(rec.V, &e); err != nil {
			return err
		}
		h.cache[e.URL] = &e
	case recApp:
		var a App
		if err := json.Unmarshal(rec.V, &a); err != nil {
			return err
		}
		h.applyAppLocked(a)
	case recAppPush:
		var r appPushRec
		if err := json.Unmarshal(rec.V, &r); err != nil {
			return err
		}
		if a := h.findAppLocked(r.App); a != nil {
			a.Pushes = h.keepPushes(append(a.Pushes, r.Push))
		}
	case recEvent:
		var e Event
		if err := json.Unmarshal(rec.V, &e); err != nil {
			return err
		}
		h.events.restore(e)
	case recSoftware:
		var r softwareRec
		if err := json.Unmarshal(rec.V, &r); err != nil {
			return err
		}
		// A change through the API outlives a restart with the same --device-software;
		// a different one is a new choice and wins.
		if r.Option == h.softwareOption {
			sw, err := ParseSoftware(r.Version)
			if err != nil {
				return err
			}
			h.software = sw
		}
	case recDeviceSecret:
		return json.Unmarshal(rec.V, &h.secret)
	}
	return nil
}

// softwareRec is a device software change, with the Options.Software it was made under.
type softwareRec struct {
	Version string `json:"version"`
	Option  string `json:"option"`
}

// compactLocked rewrites the journal as one record per live object, then swaps it in.
func (h *Handset) compactLocked() error {
	tmp := filepath.Join(h.j.dir, journalName+".tmp")
	f, err := statedir.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("compact journal: %w", err)
	}
	nj := &journal{dir: h.j.dir, f: f, w: bufio.NewWriter(f)}
	var werr error
	put := func(op recKind, v any) {
		if werr == nil {
			werr = nj.write(op, v)
		}
	}
	for _, m := range h.messages {
		put(recMessage, m)
	}
	put(recSync, h.sync)
	if h.secret != "" {
		put(recDeviceSecret, h.secret)
	}
	for _, c := range h.channels {
		put(recChannel, c)
		if c.Read {
			put(recChannelRead, c.ID)
		}
	}
	for _, e := range h.cache {
		if !h.expiredLocked(e) {
			put(recCache, e)
		}
	}
	for _, a := range h.apps {
		cp := *a
		cp.Pushes = nil
		put(recApp, cp)
		for _, p := range a.Pushes {
			put(recAppPush, appPushRec{App: a.ID, Push: p})
		}
	}
	for _, e := range h.Events(0) {
		put(recEvent, e)
	}
	if v := h.software.String(); v != h.softwareOption {
		put(recSoftware, softwareRec{Version: v, Option: h.softwareOption})
	}
	if werr == nil {
		werr = f.Sync()
	}
	if werr != nil {
		nj.close()
		os.Remove(tmp)
		return fmt.Errorf("compact journal: %w", werr)
	}
	if err := os.Rename(tmp, filepath.Join(h.j.dir, journalName)); err != nil {
		nj.close()
		return fmt.Errorf("compact journal: %w", err)
	}
	h.j.close()
	nj.sync = h.j.sync
	nj.live = nj.writes
	h.j = nj
	return nil
}
