package sandbox

import (
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// wasmPageSize is the size of a WebAssembly memory page.
const wasmPageSize = 64 << 10

// limitedAllocator backs the linear memory of one instance and refuses to
// grow it past limit bytes. It records refusals so that Run can tell a
// memory-limit death from other failures.
//
// wazero calls Allocate once per memory at instantiation, then Reallocate
// from the guest's goroutine on memory.grow; peak and denied are read by Run
// after the guest stopped, but atomics keep the race detector and a
// concurrent Close honest.
type limitedAllocator struct {
	limit  uint64        // bytes, a multiple of wasmPageSize
	peak   atomic.Uint64 // largest size granted
	denied atomic.Uint64 // largest size refused, 0 if none
}

var _ experimental.MemoryAllocator = (*limitedAllocator)(nil)

func (a *limitedAllocator) Allocate(capacity, _ uint64) experimental.LinearMemory {
	return &limitedMemory{a: a, initialCap: capacity}
}

type limitedMemory struct {
	a          *limitedAllocator
	initialCap uint64
	buf        []byte
}

// Reallocate grows the memory to size bytes, keeping its contents, or
// returns nil (memory.grow fails with -1) if size is over the limit.
func (m *limitedMemory) Reallocate(size uint64) []byte {
	if size > m.a.limit {
		if size > m.a.denied.Load() {
			m.a.denied.Store(size)
		}
		return nil
	}
	if size > m.a.peak.Load() {
		m.a.peak.Store(size)
	}
	switch {
	case size <= uint64(cap(m.buf)):
		// Bytes past len were never handed to the guest and are still zero.
		m.buf = m.buf[:size]
	case m.buf == nil:
		m.buf = make([]byte, size, max(size, min(m.initialCap, m.a.limit)))
	default:
		// Amortize growth like append, but never reserve past the limit.
		newCap := max(size, min(uint64(cap(m.buf))+uint64(cap(m.buf))/2, m.a.limit))
		buf := make([]byte, size, newCap)
		copy(buf, m.buf)
		m.buf = buf
	}
	return m.buf
}

func (m *limitedMemory) Free() { m.buf = nil }
