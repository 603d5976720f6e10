package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"hash/maphash"
	"math/bits"
)

// idFilter is a Bloom filter of the push names (id and source) the SQLite store holds: a
// push whose name it has never seen is no duplicate, and needs no lookup in the table (a
// group commit's lookup cost about 4 µs a push). It answers "maybe" for every name added
// and, rarely, for others; those are looked up. It is built from the table when the store
// opens, sized for four times the pushes there (at least a million), at 16 bits a push;
// beyond that, more names answer "maybe" and are looked up, until the next open sizes it
// again. Used by the writer goroutine only.
//
// A name's bits all lie in one block of 256 bits, half a cache line: a filter of millions
// of names is far larger than the CPU's caches, and bits spread over the whole filter cost
// a cache miss each (about half a microsecond a push in a wrk profile). Blocking raises
// the share of false "maybe"s a little (about 0.3% against 0.2% at 16 bits a name).
type idFilter struct {
	seed   maphash.Seed
	words  []uint64
	blocks uint64 // the number of blocks, less one (a power of two)
}

const (
	blockWords   = 4 // 256 bits
	filterHashes = 4 // bits a name sets in its block
)

func newIDFilter(n int) *idFilter {
	m := uint64(max(n, 1<<20)) * 4 * 16 / 64 / blockWords
	m = 1 << bits.Len64(m-1)
	return &idFilter{seed: maphash.MakeSeed(), words: make([]uint64, m*blockWords), blocks: m - 1}
}

// loadIDFilter builds the filter of the names in the pushes table.
func loadIDFilter(ctx context.Context, conn *sql.Conn) (*idFilter, error) {
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM pushes").Scan(&n); err != nil {
		return nil, err
	}
	f := newIDFilter(n)
	rows, err := conn.QueryContext(ctx, "SELECT push_id, source FROM pushes")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var id, source string
	for rows.Next() {
		if err := rows.Scan(&id, &source); err != nil {
			return nil, err
		}
		f.add(pushName{id, source})
	}
	return f, rows.Err()
}

func (f *idFilter) hash(n pushName) uint64 {
	var h maphash.Hash
	h.SetSeed(f.seed)
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(len(n.id)))
	h.Write(l[:]) // the id's length, so that no two names run together alike
	h.WriteString(n.id)
	h.WriteString(n.source)
	return h.Sum64()
}

// block returns n's block and the hash whose upper half places its bits there.
func (f *idFilter) block(n pushName) ([]uint64, uint64) {
	x := f.hash(n)
	i := (x & f.blocks) * blockWords
	return f.words[i : i+blockWords : i+blockWords], x >> 32
}

func (f *idFilter) add(n pushName) {
	b, y := f.block(n)
	for range filterHashes {
		b[y>>6&(blockWords-1)] |= 1 << (y & 63)
		y >>= 8
	}
}

// mayHave is false when n was never added.
func (f *idFilter) mayHave(n pushName) bool {
	b, y := f.block(n)
	for range filterHashes {
		if b[y>>6&(blockWords-1)]&(1<<(y&63)) == 0 {
			return false
		}
		y >>= 8
	}
	return true
}
