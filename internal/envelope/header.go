package envelope

import (
	"crypto/sha256"
	"strings"
	"time"
	"unicode/utf8"
)

// Version is the envelope format version. See the package documentation
// for its history.
const Version uint16 = 3

// Size limits of the format.
const (
	MaxEnvelopeSize = 16 << 20 // Unmarshal refuses larger input; Marshal refuses to produce it
	MaxChain        = 64       // maximum number of steps in a chain

	RequestIDSize    = 16
	FunctionIDSize   = 16
	RuntimeIDSize    = 32
	CodeDigestSize   = sha256.Size
	MaxNamespaceSize = 256
	MaxNameSize      = 1024
)

// Step is one function of a chain, as named in the authenticated header.
type Step struct {
	Name       string `cbor:"1,keyasint"` // fully qualified action name "/ns/action" or "/ns/pkg/action"
	FunctionID []byte `cbor:"2,keyasint"` // 16 bytes
	CodeDigest []byte `cbor:"3,keyasint"` // 32 bytes, SHA-256 of the wasm module
	KeyVersion uint32 `cbor:"4,keyasint"`
	// Runtime is the id of the one enclave runtime that may run this step
	// (RuntimeID of its ephemeral key): no other runtime accepts it, so a
	// step captured on the bus cannot run again anywhere else, nor in the
	// same runtime after a restart (a new key, a new id); the runtime's
	// replay cache refuses it in the same runtime.
	Runtime []byte `cbor:"5,keyasint"`
}

// Limits are the per-activation limits. Zero means "the platform default".
type Limits struct {
	TimeoutMs uint32 `cbor:"1,keyasint"`
	MemoryMB  uint32 `cbor:"2,keyasint"`
	LogsKB    uint32 `cbor:"3,keyasint"`
}

// Header is the authenticated plaintext metadata of a request. It does not
// change along the chain; its digest is bound into every key, capsule and
// body of the request.
type Header struct {
	Version   uint16 `cbor:"1,keyasint"`
	Suite     Suite  `cbor:"2,keyasint"`
	RequestID []byte `cbor:"3,keyasint"` // 16 bytes, random
	Namespace string `cbor:"4,keyasint"`
	Chain     []Step `cbor:"5,keyasint"` // 1..MaxChain
	Expiry    int64  `cbor:"6,keyasint"` // absolute, unix milliseconds
	Limits    Limits `cbor:"7,keyasint"`
}

// Validate checks the header's structure. It returns an error wrapping
// ErrVersion for another version, ErrSuite for an unknown suite, and
// ErrMalformed for anything else, checked in that order.
func (h *Header) Validate() error {
	if h == nil {
		return malformed("nil header")
	}
	if h.Version != Version {
		return wrap(ErrVersion, "version %d, want %d", h.Version, Version)
	}
	if !h.Suite.Valid() {
		return wrap(ErrSuite, "unknown suite %d", uint16(h.Suite))
	}
	if len(h.RequestID) != RequestIDSize {
		return malformed("request id is %d bytes, want %d", len(h.RequestID), RequestIDSize)
	}
	if len(h.Namespace) == 0 || len(h.Namespace) > MaxNamespaceSize || !utf8.ValidString(h.Namespace) {
		return malformed("namespace must be 1..%d bytes of UTF-8", MaxNamespaceSize)
	}
	if len(h.Chain) == 0 || len(h.Chain) > MaxChain {
		return malformed("chain has %d steps, want 1..%d", len(h.Chain), MaxChain)
	}
	for i := range h.Chain {
		s := &h.Chain[i]
		if len(s.Name) < 2 || len(s.Name) > MaxNameSize || !strings.HasPrefix(s.Name, "/") || !utf8.ValidString(s.Name) {
			return malformed("step %d: name must be a fully qualified action name of 2..%d bytes", i, MaxNameSize)
		}
		if len(s.FunctionID) != FunctionIDSize {
			return malformed("step %d: function id is %d bytes, want %d", i, len(s.FunctionID), FunctionIDSize)
		}
		if len(s.CodeDigest) != CodeDigestSize {
			return malformed("step %d: code digest is %d bytes, want %d", i, len(s.CodeDigest), CodeDigestSize)
		}
		if len(s.Runtime) != RuntimeIDSize {
			return malformed("step %d: runtime id is %d bytes, want %d", i, len(s.Runtime), RuntimeIDSize)
		}
	}
	if h.Expiry <= 0 {
		return malformed("expiry must be positive")
	}
	return nil
}

// headerDomain prefixes the CBOR encoding of the header in its digest.
const headerDomain = "clemmys/envelope/v1/header\x00"

// Digest validates the header and returns
// SHA-256("clemmys/envelope/v1/header\x00" || deterministic CBOR of h).
func (h *Header) Digest() ([32]byte, error) {
	if err := h.Validate(); err != nil {
		return [32]byte{}, err
	}
	b, err := encMode.Marshal(h)
	if err != nil {
		return [32]byte{}, malformed("encode header: %v", err)
	}
	d := sha256.New()
	d.Write([]byte(headerDomain))
	d.Write(b)
	var out [32]byte
	d.Sum(out[:0])
	return out, nil
}

// runtimeIDLabel prefixes a runtime's ephemeral public key in its id.
const runtimeIDLabel = "clemmys/envelope/v3/runtime-id\x00"

// RuntimeID is the id of the enclave runtime whose ephemeral (attested)
// public key is pub: SHA-256("clemmys/envelope/v3/runtime-id\x00" || pub).
// A runtime generates its key inside the TEE at start, so two runtimes
// never share an id.
func RuntimeID(pub []byte) []byte {
	h := sha256.New()
	h.Write([]byte(runtimeIDLabel))
	h.Write(pub)
	return h.Sum(nil)
}

// ExpiryTime returns Expiry as a time.Time.
func (h *Header) ExpiryTime() time.Time { return time.UnixMilli(h.Expiry) }

// Clone returns a deep copy of h.
func (h *Header) Clone() Header {
	c := *h
	c.RequestID = cloneBytes(h.RequestID)
	if h.Chain != nil {
		c.Chain = make([]Step, len(h.Chain))
		for i, s := range h.Chain {
			s.FunctionID = cloneBytes(s.FunctionID)
			s.CodeDigest = cloneBytes(s.CodeDigest)
			s.Runtime = cloneBytes(s.Runtime)
			c.Chain[i] = s
		}
	}
	return c
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}
