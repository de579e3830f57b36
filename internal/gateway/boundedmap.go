package gateway

import "sync"

// boundedMap is a map safe for concurrent use that holds at most max
// entries (given on each write): a write of a new key to a full map starts
// it over. It serves the gateway's caches, whose entries can all be
// computed again. The zero value is empty and ready.
type boundedMap[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]V
}

func (b *boundedMap[K, V]) get(k K) (V, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.m[k]
	return v, ok
}

func (b *boundedMap[K, V]) put(k K, v V, max int) {
	b.update(k, max, func(V, bool) (V, bool) { return v, true })
}

// update sets k to what f makes of its current value (ok: present), unless
// f declines, under one lock; it reports whether it set k.
func (b *boundedMap[K, V]) update(k K, max int, f func(v V, ok bool) (V, bool)) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	old, ok := b.m[k]
	v, set := f(old, ok)
	if !set {
		return false
	}
	if b.m == nil || len(b.m) >= max {
		b.m = map[K]V{}
	}
	b.m[k] = v
	return true
}

func (b *boundedMap[K, V]) delete(k K) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, k)
}
