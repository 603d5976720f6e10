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
type idFilter struct {
	seed maphash.Seed
	bits []uint64
	mask uint64 // the number of bits, less one (a power of two)
}

// filterHashes is how many bits a name sets.
const filterHashes = 4

func newIDFilter(n int) *idFilter {
	m := uint64(max(n, 1<<20)) * 4 * 16
	m = 1 << bits.Len64(m-1)
	return &idFilter{seed: maphash.MakeSeed(), bits: make([]uint64, m/64), mask: m - 1}
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

func (f *idFilter) add(n pushName) {
	x := f.hash(n)
	step := x>>32 | 1
	for range filterHashes {
		b := x & f.mask
		f.bits[b/64] |= 1 << (b % 64)
		x += step
	}
}

// mayHave is false when n was never added.
func (f *idFilter) mayHave(n pushName) bool {
	x := f.hash(n)
	step := x>>32 | 1
	for range filterHashes {
		b := x & f.mask
		if f.bits[b/64]&(1<<(b%64)) == 0 {
			return false
		}
		x += step
	}
	return true
}
