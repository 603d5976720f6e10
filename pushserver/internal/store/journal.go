package store

// The SQLite store's journal: a push is durable once its record is in the journal, an
// append-only file that one write and one fdatasync per group commit extend. The indexer,
// a goroutine of its own, later moves the journal's records into the pushes and recipients
// tables in large transactions, with each recipient's latest state folded into its row, and
// then deletes the journal segments it emptied. A push's B-tree rows and indexes are thus
// written once per few thousand pushes rather than once per group commit, and a recipient
// delivered before its push is indexed is never updated in place.
//
// The journal is a sequence of segment files (push.journal.NNNNNNNNNNNNNNNN, numbered in
// the order written); the writer appends to the newest and starts the next whenever it hands
// the records so far to the indexer. Each record is framed by its length and CRC-32C; at
// open, the records of every segment left are applied to the tables (applying is
// idempotent: rows are inserted by key, or ignored when there) before anything is read,
// and a torn record at the end of the newest segment (a write cut off by a crash, never
// acknowledged) is dropped.
//
// Reads by push id (PushStatus, LatestPush, PushExists) and LoadOpen first wait until
// everything journaled before them is indexed, so they see every push accepted before
// them. A push id is checked for duplicates against the journaled pushes not yet indexed,
// in memory, and against the table.

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/bbsim/bbsim/internal/statedir"
	"github.com/bbsim/bbsim/rim"
)

// indexEvery is how many journal records the writer gathers before it hands them to the
// indexer, unless their segment reaches segmentSize first: large enough that the tables'
// pages are written once for many pushes, small enough that the records waiting (held in
// memory until indexed, bodies included) stay a few megabytes.
const indexEvery = 4096

// journalPrefix names the journal's segment files in the store's directory.
const journalPrefix = "push.journal."

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

const (
	recPush  = 1
	recState = 2
	recSeal  = 3 // the last record of a segment the writer left: how many came before it
)

// segmentSize is how long a new segment file is made (written with zeros) before records
// go in: a sync that extends a file also syncs its size, and costs this machine's disk
// about twice as much as one that overwrites. Segments the indexer emptied are used
// again (up to keepFree of them) rather than deleted and made anew.
const (
	segmentSize = 4 << 20
	keepFree    = 2
)

// freePrefix names segment files waiting to be used again: not segments, never read.
const freePrefix = "push.journal-free."

// seed is the CRC-32C a segment's records start from: a record of another segment (a used
// file's stale bytes past the records written since) does not check.
func seed(seg uint64) uint32 {
	// crc32.Checksum of the number's 8 little-endian bytes, computed here with the table:
	// handing crc32 a slice would allocate it on every record.
	crc := ^uint32(0)
	for range 8 {
		crc = castagnoli[byte(crc)^byte(seg)] ^ (crc >> 8)
		seg >>= 8
	}
	return ^crc
}

// jrec is one journal record: a push with its recipients, or a recipient's new state.
type jrec struct {
	push *Push
	rs   []jrecip
	seq  int64 // a state: the recipient's key, and
	u    Update
}

type jrecip struct {
	seq  int64
	pin  string
	port int
}

// pushName is a push's identity for duplicates: its id and its source.
type pushName struct{ id, source string }

// journal is the SQLite store's journal; its fields are the writer goroutine's unless said.
type journal struct {
	dir    string
	log    *slog.Logger
	f      *os.File // the segment being written
	seg    uint64   // its number
	size   int64    // where the next record goes
	count  int      // its records
	buf    []byte
	recs   []jrec // journaled since the last hand-over to the indexer
	failed error  // a write that could not be undone: the journal takes no more records

	nextKey, nextSeq int64
	wconn            *sql.Conn
	ids              *idFilter         // every push name in the table or journaled
	dup              map[int]*sql.Stmt // dupStmt's, by number of pairs

	mu        sync.Mutex       // guards what follows, shared with the indexer
	unindexed map[pushName]int // journaled pushes not yet in the table
	free      []string         // segment files to use again
	freeNext  uint64           // the number of the next free file

	jobs chan indexJob // to the indexer
	done chan struct{} // the indexer has stopped
}

// indexJob is the indexer's work: records to move into the tables, after which the
// segments up to upto hold nothing else and are deleted, and flushes to answer.
type indexJob struct {
	recs    []jrec
	upto    uint64
	flushes []*op
}

func segmentName(n uint64) string { return fmt.Sprintf("%s%016d", journalPrefix, n) }

// segments lists the journal's segment numbers in dir, oldest first.
func segments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), journalPrefix)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(rest, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("push store journal: unexpected file %s in %s", e.Name(), dir)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// appendRecord appends r, framed for segment seg, to b.
func appendRecord(b []byte, seg uint64, r *jrec) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0) // length and CRC of what follows
	if p := r.push; p != nil {
		b = append(b, recPush)
		b = binary.AppendUvarint(b, uint64(p.Key))
		b = appendBytes(b, p.ID)
		b = appendBytes(b, p.Source)
		b = appendBytes(b, p.Header)
		b = appendBytes(b, p.Body)
		b = appendBytes(b, p.RequestURI)
		b = appendBytes(b, p.Reliability)
		b = binary.AppendVarint(b, unixMs(p.DeliverBefore))
		b = binary.AppendVarint(b, unixMs(p.DeliverAfter))
		b = appendBytes(b, p.NotifyURL)
		b = append(b, byte(boolInt(p.NotifyPAP)))
		b = appendBytes(b, p.PAPVersion)
		b = binary.AppendVarint(b, unixMs(p.AcceptedAt))
		b = binary.AppendUvarint(b, uint64(len(r.rs)))
		for _, rr := range r.rs {
			b = binary.AppendUvarint(b, uint64(rr.seq))
			b = appendBytes(b, rr.pin)
			b = binary.AppendUvarint(b, uint64(rr.port))
		}
	} else {
		b = append(b, recState)
		b = binary.AppendUvarint(b, uint64(r.seq))
		b = appendBytes(b, r.u.State)
		b = binary.AppendVarint(b, int64(r.u.Code))
		b = appendBytes(b, r.u.Reason)
		b = binary.AppendVarint(b, unixMs(r.u.TransportAt))
		b = binary.AppendVarint(b, unixMs(r.u.At))
	}
	return frame(b, start, seg)
}

// frame fills in the length and CRC of the record that starts at b[start].
func frame(b []byte, start int, seg uint64) []byte {
	payload := b[start+8:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Update(seed(seg), castagnoli, payload))
	return b
}

// appendSeal appends the seal of segment seg, which holds n records, to b.
func appendSeal(b []byte, seg uint64, n int) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0, recSeal)
	b = binary.AppendUvarint(b, uint64(n))
	return frame(b, start, seg)
}

func appendBytes[S ~string | ~[]byte](b []byte, s S) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads a record's payload; the first malformed field sets err.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// varint undoes binary.AppendVarint: a zig-zag encoded uvarint.
func (d *decoder) varint() int64 {
	u := d.uvarint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string { return string(d.bytes()) }

func (d *decoder) byte1() byte {
	if len(d.b) == 0 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errors.New("malformed record")
	}
	d.b = nil
}

// decodeRecord decodes one record's payload.
func decodeRecord(payload []byte) (jrec, error) {
	d := &decoder{b: payload}
	var r jrec
	switch d.byte1() {
	case recPush:
		p := &Push{}
		p.Key = int64(d.uvarint())
		p.ID, p.Source = d.str(), d.str()
		p.Header = slices.Clone(d.bytes())
		p.Body = slices.Clone(d.bytes())
		if p.Body == nil {
			p.Body = []byte{}
		}
		p.RequestURI, p.Reliability = d.str(), d.str()
		p.DeliverBefore, p.DeliverAfter = fromMs(d.varint()), fromMs(d.varint())
		p.NotifyURL = d.str()
		p.NotifyPAP = d.byte1() != 0
		p.PAPVersion = d.str()
		p.AcceptedAt = fromMs(d.varint())
		n := d.uvarint()
		if n > uint64(len(payload)) {
			d.fail()
		}
		for range n {
			r.rs = append(r.rs, jrecip{seq: int64(d.uvarint()), pin: d.str(), port: int(d.uvarint())})
		}
		r.push = p
	case recState:
		r.seq = int64(d.uvarint())
		r.u.State = rim.State(d.str())
		r.u.Code = int(d.varint())
		r.u.Reason = d.str()
		r.u.TransportAt, r.u.At = fromMs(d.varint()), fromMs(d.varint())
	default:
		d.fail()
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	return r, d.err
}

// readSegment reads the records of segment seg in path, up to the first that does not
// check (a write cut off by a crash, or a used file's stale bytes), and whether a seal
// ended them with their number.
func readSegment(path string, seg uint64) (recs []jrec, sealed bool, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false, err
	}
	s := seed(seg)
	for off := 0; len(data)-off >= 8; {
		n := int(binary.LittleEndian.Uint32(data[off:]))
		sum := binary.LittleEndian.Uint32(data[off+4:])
		if n == 0 || n > len(data)-off-8 {
			break
		}
		payload := data[off+8 : off+8+n]
		if crc32.Update(s, castagnoli, payload) != sum {
			break
		}
		off += 8 + n
		if payload[0] == recSeal {
			count, k := binary.Uvarint(payload[1:])
			return recs, k > 0 && count == uint64(len(recs)), nil
		}
		r, err := decodeRecord(payload)
		if err != nil {
			break
		}
		recs = append(recs, r)
	}
	return recs, false, nil
}

// recoverJournal applies what the journal's segments in dir hold to the tables and makes
// their files free; it returns the number for the next segment. The newest segment ends at
// its first record that does not check (one a crash cut off was never acknowledged); each
// older one must end with its seal, or the store is not opened.
func recoverJournal(ctx context.Context, conn *sql.Conn, dir string, log *slog.Logger) (uint64, error) {
	segs, err := segments(dir)
	if err != nil {
		return 0, fmt.Errorf("push store journal: %w", err)
	}
	if len(segs) == 0 {
		return 1, nil
	}
	var recs []jrec
	for i, n := range segs {
		path := filepath.Join(dir, segmentName(n))
		rs, sealed, err := readSegment(path, n)
		if err != nil {
			return 0, fmt.Errorf("push store journal: %w", err)
		}
		if !sealed && i != len(segs)-1 {
			return 0, fmt.Errorf("%w: push store journal %s ends after its record %d without its seal, though a later segment exists: records were lost; %s", statedir.ErrDamaged, path, len(rs), statedir.Afresh)
		}
		recs = append(recs, rs...)
	}
	ix := newIndex(conn)
	defer ix.close()
	if err := ix.apply(ctx, recs); err != nil {
		return 0, fmt.Errorf("push store journal: apply %d records: %w", len(recs), err)
	}
	if len(recs) > 0 {
		log.Info("push store journal applied", "records", len(recs), "segments", len(segs))
	}
	for _, n := range segs {
		if err := os.Remove(filepath.Join(dir, segmentName(n))); err != nil {
			return 0, fmt.Errorf("push store journal: %w", err)
		}
	}
	if err := syncDir(dir); err != nil {
		return 0, err
	}
	return segs[len(segs)-1] + 1, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("push store journal: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("push store journal: sync %s: %w", dir, err)
	}
	return nil
}

// openJournal starts the journal's newest segment, number seg, and the indexer.
func openJournal(ctx context.Context, dir string, seg uint64, db *sql.DB, wconn *sql.Conn, log *slog.Logger) (*journal, error) {
	j := &journal{dir: dir, log: log, seg: seg, unindexed: map[pushName]int{}, wconn: wconn, dup: map[int]*sql.Stmt{},
		jobs: make(chan indexJob, 1), done: make(chan struct{})}
	var err error
	if err = wconn.QueryRowContext(ctx, "SELECT COALESCE(MAX(id), 0) + 1 FROM pushes").Scan(&j.nextKey); err != nil {
		return nil, err
	}
	if err = wconn.QueryRowContext(ctx, "SELECT COALESCE(MAX(seq), 0) + 1 FROM recipients").Scan(&j.nextSeq); err != nil {
		return nil, err
	}
	if j.ids, err = loadIDFilter(ctx, wconn); err != nil {
		return nil, err
	}
	if err := j.findFree(); err != nil {
		return nil, err
	}
	if err := j.startSegment(); err != nil {
		return nil, err
	}
	iconn, err := db.Conn(ctx)
	if err != nil {
		j.f.Close()
		return nil, err
	}
	go j.indexer(iconn, seg-1)
	return j, nil
}

// findFree lists the free segment files left in the directory, deleting those beyond
// keepFree.
func (j *journal) findFree() error {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return fmt.Errorf("push store journal: %w", err)
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), freePrefix)
		if !ok {
			continue
		}
		n, _ := strconv.ParseUint(rest, 10, 64)
		j.freeNext = max(j.freeNext, n+1)
		path := filepath.Join(j.dir, e.Name())
		if len(j.free) < keepFree {
			if err := os.Chmod(path, 0o600); err != nil { // private, like every file of the store
				return fmt.Errorf("push store journal: %w", err)
			}
			j.free = append(j.free, path)
		} else if err := os.Remove(path); err != nil {
			return fmt.Errorf("push store journal: %w", err)
		}
	}
	return nil
}

// startSegment starts segment j.seg in a free file, or in a new one made segmentSize
// long, and makes its name durable.
func (j *journal) startSegment() error {
	path := filepath.Join(j.dir, segmentName(j.seg))
	j.mu.Lock()
	var reuse string
	if n := len(j.free); n > 0 {
		reuse, j.free = j.free[n-1], j.free[:n-1]
	}
	j.mu.Unlock()
	if reuse != "" {
		if err := os.Rename(reuse, path); err != nil {
			return fmt.Errorf("push store journal: %w", err)
		}
	}
	f, err := statedir.OpenFile(path, os.O_WRONLY|os.O_CREATE)
	if err != nil {
		return fmt.Errorf("push store journal: %w", err)
	}
	if reuse == "" {
		err = f.Truncate(0)
		for off := int64(0); err == nil && off < segmentSize; off += int64(len(zeros)) {
			_, err = f.WriteAt(zeros[:], off)
		}
		if err == nil {
			err = fdatasync(f)
		}
	}
	if err == nil {
		err = syncDir(j.dir)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("push store journal: start %s: %w", path, err)
	}
	j.f, j.size, j.count = f, 0, 0
	return nil
}

var zeros [64 << 10]byte

// freeSegments makes the files of segments from..upto free for use again (up to keepFree
// of them; the others are deleted). Called by the indexer once their records are in the
// tables.
func (j *journal) freeSegments(from, upto uint64) error {
	for n := from; n <= upto; n++ {
		path := filepath.Join(j.dir, segmentName(n))
		j.mu.Lock()
		keep := len(j.free) < keepFree
		free := filepath.Join(j.dir, fmt.Sprintf("%s%d", freePrefix, j.freeNext))
		if keep {
			j.freeNext++
		}
		j.mu.Unlock()
		var err error
		if keep {
			err = os.Rename(path, free)
		} else {
			err = os.Remove(path)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("push store journal: %w", err)
		}
		if keep && err == nil {
			j.mu.Lock()
			j.free = append(j.free, free)
			j.mu.Unlock()
		}
	}
	return syncDir(j.dir)
}

// dupStmt returns the statement that finds which of n [push id, source] pairs name a push
// in the table, n a power of two (the pairs padded with NULLs, which match nothing): one
// statement, and so one read transaction, for a group commit's pushes.
func (j *journal) dupStmt(n int) (*sql.Stmt, error) {
	if st := j.dup[n]; st != nil {
		return st, nil
	}
	var b strings.Builder
	b.WriteString("SELECT column1 FROM (VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "(%d,?,?)", i)
	}
	b.WriteString(") v WHERE EXISTS (SELECT 1 FROM pushes WHERE push_id = v.column2 AND source = v.column3)")
	st, err := j.wconn.PrepareContext(context.Background(), b.String())
	if err != nil {
		return nil, err
	}
	j.dup[n] = st
	return st, nil
}

// duplicates reports which of names are journaled and not yet indexed, or in the table.
func (j *journal) duplicates(names []pushName) ([]bool, error) {
	dup := make([]bool, len(names))
	j.mu.Lock()
	for i, n := range names {
		dup[i] = j.unindexed[n] > 0
	}
	j.mu.Unlock()
	var look []int // the names to look up in the table: those the filter may have seen
	for i, nm := range names {
		if !dup[i] && j.ids.mayHave(nm) {
			look = append(look, i)
		}
	}
	if len(look) == 0 {
		return dup, nil
	}
	n := 1
	for n < len(look) {
		n *= 2
	}
	st, err := j.dupStmt(n)
	if err != nil {
		return nil, fmt.Errorf("push store: look for duplicate push ids: %w", err)
	}
	args := make([]any, 2*n)
	for k, i := range look {
		args[2*k], args[2*k+1] = names[i].id, names[i].source
	}
	rows, err := st.Query(args...)
	if err != nil {
		return nil, fmt.Errorf("push store: look for duplicate push ids: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k int
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("push store: look for duplicate push ids: %w", err)
		}
		dup[look[k]] = true
	}
	return dup, rows.Err()
}

// write appends the framed records in j.buf to the segment and syncs it. When that fails,
// the segment is cut back to where it was, so that no torn record is followed by others;
// when even that fails, the journal takes no more records.
func (j *journal) write() error {
	if j.failed != nil {
		return j.failed
	}
	_, err := j.f.WriteAt(j.buf, j.size)
	if err == nil {
		err = commitSync(j.f)
	}
	if err != nil {
		err = fmt.Errorf("push store journal %s: %w", j.f.Name(), err)
		if terr := j.f.Truncate(j.size); terr != nil {
			j.failed = errors.Join(err, terr)
		} else if serr := fdatasync(j.f); serr != nil {
			j.failed = errors.Join(err, serr)
		}
		return err
	}
	j.size += int64(len(j.buf))
	return nil
}

// seal ends the segment with its seal, so that reading it back can tell it whole.
func (j *journal) seal() error {
	j.buf = appendSeal(j.buf[:0], j.seg, j.count)
	return j.write()
}

// handOver gives the records journaled so far to the indexer, with flushes to answer once
// they are in the tables, and starts a new segment for what follows.
func (j *journal) handOver(flushes []*op) {
	job := indexJob{recs: j.recs, upto: j.seg, flushes: flushes}
	j.recs = nil
	if j.size > 0 {
		old, unsealed := j.f, j.size
		err := j.seal()
		if err == nil {
			j.seg++
			if err = j.startSegment(); err != nil {
				j.seg--
				j.f, j.size = old, unsealed // the next records go over the seal
			}
		}
		if err != nil {
			// Keep writing to the old segment (unsealed, so any seal written is stale), which
			// is then kept until a later hand-over.
			j.log.Error("push store journal: cannot start a new segment", "err", err)
			job.upto = j.seg - 1
		} else {
			old.Close()
		}
	} else {
		job.upto = j.seg - 1 // the current segment is empty, and stays
	}
	j.jobs <- job
}

// indexer applies the jobs the writer hands over, in order, on its own connection. A job
// that fails is kept and tried again with the next one; its segments stay until then.
func (j *journal) indexer(conn *sql.Conn, removed uint64) {
	defer close(j.done)
	defer conn.Close()
	ix := newIndex(conn)
	defer ix.close()
	var carry []jrec // removed: segments up to this one are gone
	var names []pushName
	for job := range j.jobs {
		recs := job.recs
		if carry != nil {
			recs = append(carry, recs...)
		}
		err := ix.apply(context.Background(), recs)
		if err != nil {
			j.log.Error("push store journal: indexing failed; the records stay in the journal", "records", len(recs), "err", err)
			carry = recs
		} else {
			carry = nil
			if job.upto > removed {
				if ferr := j.freeSegments(removed+1, job.upto); ferr != nil {
					j.log.Error("push store journal: cannot free indexed segments", "err", ferr)
				} else {
					removed = job.upto
				}
			}
			names = names[:0]
			for i := range recs {
				if p := recs[i].push; p != nil {
					names = append(names, pushName{p.ID, p.Source})
				}
			}
			j.forget(names)
			clear(names)
		}
		for _, o := range job.flushes {
			o.reply(err)
		}
	}
}

// forget takes names off the journaled pushes not yet in the table: once they are in it,
// or when their records could not be written.
func (j *journal) forget(names []pushName) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, n := range names {
		if j.unindexed[n]--; j.unindexed[n] <= 0 {
			delete(j.unindexed, n)
		}
	}
}

// close hands what is left to the indexer, with the segment being written, which it frees
// once that is indexed, waits for it, and closes the segment. The writer must have stopped.
func (j *journal) close() {
	j.jobs <- indexJob{recs: j.recs, upto: j.seg}
	j.recs = nil
	close(j.jobs)
	<-j.done
	for _, st := range j.dup {
		st.Close()
	}
	j.f.Close()
}
