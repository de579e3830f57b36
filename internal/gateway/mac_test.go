package gateway

import (
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"
)

// A reused state gives the MAC a fresh one does, also when the state
// before was abandoned half written and under concurrent use.
func TestKeyedMAC(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	k := newKeyedMAC(key)
	want := func(msg string) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(msg))
		return m.Sum(nil)
	}
	abandoned := k.get()
	abandoned.Write([]byte("half"))
	k.pool.Put(abandoned) // as if a caller had given it back mid-way
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				msg := fmt.Sprintf("message %d/%d", g, i)
				m := k.get()
				m.Write([]byte(msg))
				if got := k.sum(m); !hmac.Equal(got, want(msg)) {
					t.Errorf("%s: MAC %x, want %x", msg, got, want(msg))
					return
				}
			}
		})
	}
	wg.Wait()
}
