package envelope

import (
	"testing"
)

var payload1K = make([]byte, 1024)

func BenchmarkSeal1Step(b *testing.B) {
	for _, suite := range suites {
		b.Run(suite.String(), func(b *testing.B) {
			f := newTestFn(b, suite, "bench")
			h := newTestHeader(suite, "bench", f)
			rs := RequestSecret(NewKey(), h.RequestID)
			pubs := pubsOf(f)
			b.SetBytes(int64(len(payload1K)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Seal(h, rs, testAuthKey, pubs, payload1K); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, suite := range suites {
		b.Run(suite.String(), func(b *testing.B) {
			f := newTestFn(b, suite, "bench")
			h := newTestHeader(suite, "bench", f)
			rs := RequestSecret(NewKey(), h.RequestID)
			e, err := Seal(h, rs, testAuthKey, pubsOf(f), payload1K)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(payload1K)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Open(e, &f.id, testNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSealOutput(b *testing.B) {
	f := newTestFn(b, SuiteX25519, "bench")
	h := newTestHeader(SuiteX25519, "bench", f)
	rs := RequestSecret(NewKey(), h.RequestID)
	e, err := Seal(h, rs, testAuthKey, pubsOf(f), payload1K)
	if err != nil {
		b.Fatal(err)
	}
	o, err := Open(e, &f.id, testNow)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(payload1K)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := o.SealOutput(payload1K); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalUnmarshal(b *testing.B) {
	f := newTestFn(b, SuiteX25519, "bench")
	h := newTestHeader(SuiteX25519, "bench", f)
	e, err := Seal(h, RequestSecret(NewKey(), h.RequestID), testAuthKey, pubsOf(f), payload1K)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		buf, err := e.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Unmarshal(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenResult(b *testing.B) {
	f := newTestFn(b, SuiteX25519, "bench")
	h := newTestHeader(SuiteX25519, "bench", f)
	rs := RequestSecret(NewKey(), h.RequestID)
	e, _ := Seal(h, rs, testAuthKey, pubsOf(f), payload1K)
	o, _ := Open(e, &f.id, testNow)
	res, _ := o.SealOutput(payload1K)
	d, _ := h.Digest()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := OpenResult(res, rs, d); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSeal3Steps is the gateway's sealing work for a 3-step sequence
// of distinct functions, including the wire encoding.
func BenchmarkSeal3Steps(b *testing.B) {
	for _, suite := range suites {
		b.Run(suite.String(), func(b *testing.B) {
			fns := []*testFn{newTestFn(b, suite, "a"), newTestFn(b, suite, "b"), newTestFn(b, suite, "c")}
			h := newTestHeader(suite, "bench3", fns...)
			rs := RequestSecret(NewKey(), h.RequestID)
			pubs := pubsOf(fns...)
			b.ReportAllocs()
			for b.Loop() {
				e, err := Seal(h, rs, testAuthKey, pubs, payload1K)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := e.Marshal(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSessionsSeal1Step is Seal with a warm sender session cache: the
// gateway's steady state (format 2).
func BenchmarkSessionsSeal1Step(b *testing.B) {
	for _, suite := range suites {
		b.Run(suite.String(), func(b *testing.B) {
			f := newTestFn(b, suite, "bench")
			h := newTestHeader(suite, "bench", f)
			rs := RequestSecret(NewKey(), h.RequestID)
			pubs := pubsOf(f)
			var s Sessions
			b.SetBytes(int64(len(payload1K)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Seal(h, rs, testAuthKey, pubs, payload1K); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSessionsSeal3Steps is the gateway's sealing work for a 3-step
// sequence with warm sessions, including the wire encoding.
func BenchmarkSessionsSeal3Steps(b *testing.B) {
	for _, suite := range suites {
		b.Run(suite.String(), func(b *testing.B) {
			fns := []*testFn{newTestFn(b, suite, "a"), newTestFn(b, suite, "b"), newTestFn(b, suite, "c")}
			h := newTestHeader(suite, "bench3", fns...)
			rs := RequestSecret(NewKey(), h.RequestID)
			pubs := pubsOf(fns...)
			var s Sessions
			b.ReportAllocs()
			for b.Loop() {
				e, err := s.Seal(h, rs, testAuthKey, pubs, payload1K)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := e.Marshal(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpenCached is Open with a warm runtime session cache: the
// runtime's steady state (format 2).
func BenchmarkOpenCached(b *testing.B) {
	for _, suite := range suites {
		b.Run(suite.String(), func(b *testing.B) {
			f := newTestFn(b, suite, "bench")
			h := newTestHeader(suite, "bench", f)
			rs := RequestSecret(NewKey(), h.RequestID)
			e, err := Seal(h, rs, testAuthKey, pubsOf(f), payload1K)
			if err != nil {
				b.Fatal(err)
			}
			id := f.id
			id.Sessions = NewOpenCache(0, 0)
			if _, err := Open(e, &id, testNow); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(payload1K)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Open(e, &id, testNow); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
