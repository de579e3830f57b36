package main

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"runtime"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/dop251/goja"
)

var jsonMarshal = json.Marshal

// start is the engine's start, for process.hrtime and uptime.
var start = time.Now()

// natives are the Go functions prelude.js and buffer.js build on.
func (e *engine) natives() *goja.Object {
	rt := e.rt
	n := rt.NewObject()
	set := func(name string, v any) { _ = n.Set(name, v) }
	set("nodeVersion", e.version)
	set("log", func(stderr bool, msg string) { e.logLine(stderr, msg) })
	set("setTimer", func(fn goja.Callable, ms float64, repeat bool) int64 {
		id := e.timers.add(e.now(), fn, ms, repeat)
		if id == 0 {
			panic(rt.NewTypeError(fmt.Sprintf("too many pending timers (at most %d)", maxTimers)))
		}
		return id
	})
	set("clearTimer", func(id int64) { e.timers.clear(id) })
	set("refreshTimer", func(id int64) { e.timers.refresh(id, e.now()) })
	set("nanotime", func() int64 { return int64(time.Since(start)) })
	set("memory", func() uint64 {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.Sys
	})
	set("exit", func(code int) { exitFunc(code) })
	set("utf8Encode", func(s string) goja.ArrayBuffer { return rt.NewArrayBuffer([]byte(s)) })
	set("utf8Decode", func(b goja.ArrayBuffer, fatal bool) string {
		data := b.Bytes()
		if fatal && !utf8.Valid(data) {
			panic(rt.NewTypeError("The encoded data was not valid for encoding utf-8"))
		}
		return decodeUTF8(data)
	})
	set("randomBytes", func(size int) goja.ArrayBuffer {
		if size < 0 || size > maxRandomBytes {
			panic(rt.NewTypeError(fmt.Sprintf("randomBytes: size must be 0..%d", maxRandomBytes)))
		}
		b := make([]byte, size)
		_, _ = rand.Read(b) // never fails (crypto/rand)
		return rt.NewArrayBuffer(b)
	})
	set("randomUUID", func() string { return randomUUID() })
	set("newHash", func(kind, alg string, key goja.Value) any {
		newHash := hashes[alg]
		if newHash == nil {
			panic(rt.NewTypeError("Digest method not supported: " + alg))
		}
		if kind == "hmac" {
			return hmac.New(newHash, bytesOf(rt, key))
		}
		return newHash()
	})
	set("hashUpdate", func(h hash.Hash, data goja.Value) { h.Write(bytesOf(rt, data)) })
	set("hashDigest", func(h hash.Hash) goja.ArrayBuffer { return rt.NewArrayBuffer(h.Sum(nil)) })
	set("timingSafeEqual", func(a, b goja.ArrayBuffer) bool {
		return subtle.ConstantTimeCompare(a.Bytes(), b.Bytes()) == 1
	})
	set("encodeString", func(s, enc string) goja.ArrayBuffer { return rt.NewArrayBuffer(encodeString(s, enc)) })
	set("decodeBytes", func(b goja.ArrayBuffer, enc string) string { return decodeBytes(b.Bytes(), enc) })
	return n
}

// maxRandomBytes bounds one randomBytes call (Node's limit is 2^31-1; the
// memory limit would stop far less).
const maxRandomBytes = 64 << 20

var hashes = map[string]func() hash.Hash{
	"md5":    md5.New,
	"sha1":   sha1.New,
	"sha224": sha256.New224,
	"sha256": sha256.New,
	"sha384": sha512.New384,
	"sha512": sha512.New,
}

// bytesOf returns the bytes of an ArrayBuffer or a Uint8Array (a Buffer).
func bytesOf(rt *goja.Runtime, v goja.Value) []byte {
	switch x := v.Export().(type) {
	case goja.ArrayBuffer:
		return x.Bytes()
	case []byte:
		return x
	}
	panic(rt.NewTypeError("expected an ArrayBuffer or a Uint8Array"))
}

// randomUUID is a version 4 UUID.
func randomUUID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// decodeUTF8 decodes UTF-8, each invalid byte becoming U+FFFD.
func decodeUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	out := make([]rune, 0, len(b))
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		out = append(out, r) // RuneError for an invalid byte
		b = b[n:]
	}
	return string(out)
}

// encodeString encodes s in one of the encodings buffer.js adds.
func encodeString(s, enc string) []byte {
	switch enc {
	case "latin1", "binary", "ascii":
		u := utf16.Encode([]rune(s))
		b := make([]byte, len(u))
		for i, c := range u {
			b[i] = byte(c)
			if enc == "ascii" {
				b[i] &= 0x7f
			}
		}
		return b
	case "base64url":
		b, err := base64.RawURLEncoding.DecodeString(trimPadding(s))
		if err != nil {
			return lenientBase64URL(s)
		}
		return b
	case "ucs2", "ucs-2", "utf16le", "utf-16le":
		u := utf16.Encode([]rune(s))
		b := make([]byte, 2*len(u))
		for i, c := range u {
			b[2*i], b[2*i+1] = byte(c), byte(c>>8)
		}
		return b
	}
	return []byte(s)
}

// decodeBytes decodes b from one of the encodings buffer.js adds.
func decodeBytes(b []byte, enc string) string {
	switch enc {
	case "latin1", "binary":
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c)
		}
		return string(r)
	case "ascii":
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c & 0x7f)
		}
		return string(r)
	case "base64url":
		return base64.RawURLEncoding.EncodeToString(b)
	case "ucs2", "ucs-2", "utf16le", "utf-16le":
		u := make([]uint16, len(b)/2)
		for i := range u {
			u[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
		}
		return string(utf16.Decode(u))
	}
	return string(b)
}

func trimPadding(s string) string {
	for len(s) > 0 && s[len(s)-1] == '=' {
		s = s[:len(s)-1]
	}
	return s
}

// lenientBase64URL decodes base64url as Node does: characters outside the
// alphabet are skipped.
func lenientBase64URL(s string) []byte {
	clean := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			clean = append(clean, c)
		case c == '+':
			clean = append(clean, '-')
		case c == '/':
			clean = append(clean, '_')
		}
	}
	if len(clean)%4 == 1 {
		clean = clean[:len(clean)-1]
	}
	b, _ := base64.RawURLEncoding.DecodeString(string(clean))
	return b
}
