package envelope

import (
	"bytes"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

const (
	gcmNonceSize = 12
	gcmTagSize   = 16
	gcmOverhead  = gcmNonceSize + gcmTagSize

	// maxCapsuleSize bounds a capsule in the structural checks; Open then
	// requires the exact size of the header's suite.
	maxCapsuleSize = 2048
)

// Envelope is one sealed invocation in flight: the authenticated header, the
// index of the step whose input the body is, the capsules and the body.
type Envelope struct {
	Header   Header   `cbor:"1,keyasint"`
	Step     uint32   `cbor:"2,keyasint"` // index of the chain step this body is input for; == len(Chain) for the final result
	Capsules [][]byte `cbor:"3,keyasint"` // exactly one per chain step
	Body     []byte   `cbor:"4,keyasint"` // AES-256-GCM: 12-byte random nonce || ciphertext || tag
	// Auth is HMAC-SHA256(AuthKey(gateway secret, namespace), label ||
	// header digest): proof that an attested gateway created the request.
	// It is the same at every step.
	Auth []byte `cbor:"5,keyasint,omitempty"`
}

// Validate checks the envelope's structure: a valid header (see
// Header.Validate), Step ≤ len(Chain), one capsule per step, capsule and
// body sizes. It opens nothing.
func (e *Envelope) Validate() error {
	if e == nil {
		return malformed("nil envelope")
	}
	if err := e.Header.Validate(); err != nil {
		return err
	}
	if uint64(e.Step) > uint64(len(e.Header.Chain)) {
		return wrap(ErrStep, "step %d beyond chain of %d", e.Step, len(e.Header.Chain))
	}
	if len(e.Capsules) != len(e.Header.Chain) {
		return malformed("%d capsules for %d steps", len(e.Capsules), len(e.Header.Chain))
	}
	for i, c := range e.Capsules {
		if len(c) == 0 || len(c) > maxCapsuleSize {
			return malformed("capsule %d is %d bytes", i, len(c))
		}
	}
	if len(e.Body) < gcmOverhead || len(e.Body) > MaxEnvelopeSize {
		return malformed("body is %d bytes", len(e.Body))
	}
	if len(e.Auth) != 0 && len(e.Auth) != authTagSize {
		return malformed("auth tag is %d bytes", len(e.Auth))
	}
	return nil
}

const authTagSize = 32

// Marshal validates e and returns its deterministic CBOR encoding.
func (e *Envelope) Marshal() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	b, err := encMode.Marshal(e)
	if err != nil {
		return nil, malformed("encode: %v", err)
	}
	if len(b) > MaxEnvelopeSize {
		return nil, malformed("encoding is %d bytes, limit %d", len(b), MaxEnvelopeSize)
	}
	return b, nil
}

// Unmarshal decodes and validates an envelope. It refuses input larger than
// MaxEnvelopeSize, duplicate or unknown map keys, tags, indefinite lengths,
// arrays longer than MaxChain, nesting deeper than the format, trailing
// bytes, and any encoding that is not the deterministic one. Every error
// wraps ErrMalformed; an envelope of another version or with an unknown
// suite also matches ErrVersion or ErrSuite (and Code reports that).
func Unmarshal(b []byte) (*Envelope, error) {
	if len(b) > MaxEnvelopeSize {
		return nil, malformed("%d bytes, limit %d", len(b), MaxEnvelopeSize)
	}
	e := new(Envelope)
	if err := decMode.Unmarshal(b, e); err != nil {
		if v, ok := peekVersion(b); ok && v != Version {
			return nil, fmt.Errorf("%w: %w: version %d", ErrVersion, ErrMalformed, v)
		}
		return nil, malformed("decode: %s", decodeErrorText(err))
	}
	if err := e.Validate(); err != nil {
		if Code(err) != Code(ErrMalformed) {
			return nil, fmt.Errorf("%w (%w)", err, ErrMalformed)
		}
		return nil, err
	}
	// One envelope, one encoding: refuse anything Marshal would not produce
	// (non-minimal lengths, unsorted keys, null instead of empty, ...).
	again, err := encMode.Marshal(e)
	if err != nil || !bytes.Equal(again, b) {
		return nil, malformed("not in deterministic encoding")
	}
	return e, nil
}

// peekVersion leniently reads envelope key 1 → header key 1, whose position
// is fixed for all versions.
func peekVersion(b []byte) (uint16, bool) {
	var p struct {
		Header struct {
			Version uint16 `cbor:"1,keyasint"`
		} `cbor:"1,keyasint"`
	}
	if err := peekMode.Unmarshal(b, &p); err != nil {
		return 0, false
	}
	return p.Header.Version, true
}

// decodeErrorText bounds the decoder's message: it may quote input.
func decodeErrorText(err error) string {
	s := err.Error()
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return fmt.Sprintf("%q", s)
}

var (
	encMode  cbor.EncMode
	decMode  cbor.DecMode
	peekMode cbor.DecMode
)

func init() {
	var err error
	// RFC 8949 §4.2.1 core deterministic encoding.
	if encMode, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
	strict := cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		MaxNestedLevels:   4, // envelope → header → chain → step
		MaxArrayElements:  MaxChain,
		MaxMapPairs:       16,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		UTF8:              cbor.UTF8RejectInvalid,
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
	}
	if decMode, err = strict.DecMode(); err != nil {
		panic(err)
	}
	lenient := cbor.DecOptions{
		DupMapKey:       cbor.DupMapKeyEnforcedAPF,
		IndefLength:     cbor.IndefLengthForbidden,
		TagsMd:          cbor.TagsForbidden,
		MaxNestedLevels: 16,
	}
	if peekMode, err = lenient.DecMode(); err != nil {
		panic(err)
	}
}
