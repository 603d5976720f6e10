package browserpush

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// packetWait bounds how long the last packet of a push waits for the earlier ones,
	// which the gateway pipelines (at most 5 in flight).
	packetWait = 30 * time.Second
	// assemblyLifetime drops half-received pushes the gateway gave up on (its flow-control
	// timeout is 10 minutes by default).
	assemblyLifetime = 11 * time.Minute
	// maxAssemblies bounds the pushes being reassembled at once (each up to MaxBody). The
	// gateway delivers one push at a time to a device, so more are abandoned ones.
	maxAssemblies = 16
	// maxPackets bounds the packet count a push may announce.
	maxPackets = 1 << 16
	// doneKeep is how many completed gateway pushes are remembered, so a retried packet of
	// a push already stored is answered with its result instead of being applied twice.
	// The gateway delivers one device's pushes one after another, so a retry concerns the
	// last few; a small ring keeps a fleet of a thousand receivers light.
	doneKeep = 64
)

// packetInfo is the X-Bbsim-Packet header: index/count.
type packetInfo struct {
	index, count int
}

// parsePacket parses "index/count" (0-based index).
func parsePacket(v string) (packetInfo, error) {
	i, n, ok := strings.Cut(strings.TrimSpace(v), "/")
	if !ok {
		return packetInfo{}, fmt.Errorf("X-Bbsim-Packet %q: want index/count", v)
	}
	idx, err1 := strconv.Atoi(strings.TrimSpace(i))
	cnt, err2 := strconv.Atoi(strings.TrimSpace(n))
	if err1 != nil || err2 != nil || cnt < 1 || cnt > maxPackets || idx < 0 || idx >= cnt {
		return packetInfo{}, fmt.Errorf("X-Bbsim-Packet %q: want 0 <= index < count <= %d", v, maxPackets)
	}
	return packetInfo{index: idx, count: cnt}, nil
}

// result is how a push was answered.
type result struct {
	err *pushError // nil: stored
}

type assembly struct {
	count   int
	total   int64          // X-Bbsim-Push-Length, -1 when absent
	parts   map[int][]byte // by index: memory follows the packets received, not the count announced
	have    int
	size    int64
	created time.Time
	full    chan struct{} // closed when every packet is in
	claimed bool          // the last packet is waiting on it
}

// pushKey names a push being reassembled: push ids are unique per source (the push's
// application or initiator, X-Bbsim-Push-Source) only, so two sources' pushes with the
// same id reassemble apart.
type pushKey struct {
	source, id string
}

// assembler reassembles multi-packet pushes by source and push ID.
type assembler struct {
	maxBody int64

	mu        sync.Mutex
	active    map[pushKey]*assembly
	done      map[string]result
	doneOrder []string
	doneNext  int
	closedCh  chan struct{}
	closeOnce sync.Once
}

func newAssembler(maxBody int64) *assembler {
	return &assembler{
		maxBody:  maxBody,
		active:   map[pushKey]*assembly{},
		done:     map[string]result{},
		closedCh: make(chan struct{}),
	}
}

func (a *assembler) close() { a.closeOnce.Do(func() { close(a.closedCh) }) }

// finished returns the recorded result of a completed push (by doneKey).
func (a *assembler) finished(key string) (result, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	res, ok := a.done[key]
	return res, ok
}

// finish records the result of a completed push (by doneKey).
func (a *assembler) finish(key string, res result) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.done[key]; ok {
		a.done[key] = res
		return
	}
	if len(a.doneOrder) < doneKeep {
		a.doneOrder = append(a.doneOrder, key)
	} else {
		delete(a.done, a.doneOrder[a.doneNext])
		a.doneOrder[a.doneNext] = key
		a.doneNext = (a.doneNext + 1) % doneKeep
	}
	a.done[key] = res
}

// add stores one packet. For the last packet it waits until every earlier one has arrived
// and returns the whole content; for the others it returns nil content.
func (a *assembler) add(ctx context.Context, wait time.Duration, pushID pushKey, p packetInfo, total int64, data []byte) ([]byte, *pushError) {
	now := time.Now()
	a.mu.Lock()
	asm := a.active[pushID]
	if asm == nil {
		for id, old := range a.active {
			if now.Sub(old.created) > assemblyLifetime {
				delete(a.active, id)
			}
		}
		if len(a.active) >= maxAssemblies && !a.evictOldestLocked() {
			a.mu.Unlock()
			return nil, errf(statusResources, "too many pushes being reassembled")
		}
		if total > a.maxBody {
			a.mu.Unlock()
			return nil, errf(statusResources, "push of %d bytes exceeds the limit of %d", total, a.maxBody)
		}
		asm = &assembly{count: p.count, total: total, parts: map[int][]byte{}, created: now, full: make(chan struct{})}
		a.active[pushID] = asm
	}
	if asm.count != p.count || asm.total != total {
		delete(a.active, pushID)
		a.mu.Unlock()
		return nil, errf(statusMalformed, "packets of push %s disagree on count or length", pushID.id)
	}
	if old, ok := asm.parts[p.index]; ok {
		asm.size -= int64(len(old))
		asm.have--
	}
	asm.parts[p.index] = bytes.Clone(data)
	asm.size += int64(len(data))
	asm.have++
	if asm.size > a.maxBody {
		delete(a.active, pushID)
		a.mu.Unlock()
		return nil, errf(statusResources, "push of more than %d bytes", a.maxBody)
	}
	if asm.have == asm.count {
		select {
		case <-asm.full:
		default:
			close(asm.full)
		}
	}
	last := p.index == p.count-1
	if last {
		if asm.claimed {
			a.mu.Unlock()
			return nil, &pushError{http: 503, reason: "last packet already being processed"}
		}
		asm.claimed = true
	}
	a.mu.Unlock()
	if !last {
		return nil, nil
	}

	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-asm.full:
	case <-ctx.Done():
		a.unclaim(asm)
		return nil, &pushError{http: 503, reason: "request ended while waiting for earlier packets"}
	case <-a.closedCh:
		a.unclaim(asm)
		return nil, &pushError{http: 503, reason: "receiver closing"}
	case <-t.C:
		a.unclaim(asm)
		return nil, &pushError{http: 503, reason: "earlier packets did not arrive"}
	}
	a.mu.Lock()
	if a.active[pushID] == asm {
		delete(a.active, pushID)
	}
	// Joined under the lock: a duplicate packet may still land.
	body := make([]byte, 0, asm.size)
	for i := range asm.count {
		body = append(body, asm.parts[i]...)
	}
	a.mu.Unlock()
	if asm.total >= 0 && int64(len(body)) != asm.total {
		return nil, errf(statusMalformed, "reassembled %d bytes, X-Bbsim-Push-Length says %d", len(body), asm.total)
	}
	return body, nil
}

// evictOldestLocked drops the oldest push not waiting on its last packet, to make room.
func (a *assembler) evictOldestLocked() bool {
	var oldestID pushKey
	var oldest *assembly
	for id, asm := range a.active {
		if !asm.claimed && (oldest == nil || asm.created.Before(oldest.created)) {
			oldestID, oldest = id, asm
		}
	}
	if oldest == nil {
		return false
	}
	delete(a.active, oldestID)
	return true
}

func (a *assembler) unclaim(asm *assembly) {
	a.mu.Lock()
	asm.claimed = false
	a.mu.Unlock()
}
