// Package ipc is the framed protocol between an invoker (untrusted host) and
// the enclave runtime it supervises (trusted, a child process): 4-byte
// big-endian length, then a CBOR Frame. Frames larger than MaxFrame are
// refused on both sides. Requests flow from the invoker; the runtime answers
// each with a frame of the same ID, possibly out of order.
//
// Nothing confidential crosses this pipe unsealed: the host sees the same
// ciphertext the bus carries.
package ipc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/fxamacker/cbor/v2"
)

// MaxFrame bounds one frame (sealed code of a large module plus overhead).
const MaxFrame = 40 << 20

// Ops.
const (
	OpHello  = "hello"  // → Hello
	OpAttest = "attest" // AttestRequest → AttestReply
	OpLoad   = "load"   // LoadRequest → LoadReply
	OpRun    = "run"    // RunRequest → RunReply
	OpEngine = "engine" // EngineRequest → EngineReply
)

// ErrFrameTooLarge is returned for frames over MaxFrame.
var ErrFrameTooLarge = errors.New("ipc: frame too large")

// Frame is one message on the pipe.
type Frame struct {
	ID   uint64          `cbor:"1,keyasint"`
	Op   string          `cbor:"2,keyasint,omitempty"`
	Body cbor.RawMessage `cbor:"3,keyasint,omitempty"`
	Err  *Error          `cbor:"4,keyasint,omitempty"`
}

// Error is a typed failure reported by the runtime. Code is stable and
// machine-readable; Message is safe to show the function's owner and never
// contains keys or function data.
type Error struct {
	Code    string `cbor:"1,keyasint"`
	Message string `cbor:"2,keyasint"`
}

func (e *Error) Error() string { return fmt.Sprintf("enclave: %s: %s", e.Code, e.Message) }

// Hello describes a runtime.
type Hello struct {
	Platform     string `cbor:"1,keyasint"`
	Measurement  []byte `cbor:"2,keyasint"`
	EphemeralKey []byte `cbor:"3,keyasint"`
	// Version is the frame protocol the runtime speaks (Version); an
	// invoker refuses a runtime that speaks another one.
	Version uint16 `cbor:"4,keyasint,omitempty"`
}

// Version is the version of this frame protocol: 2 added chains
// (RunRequest key 3, RunReply keys 8–10) and Hello.Version; runtimes
// before it answer 0. 3 added JavaScript engines (OpEngine, LoadReply
// key 2). 4 is envelope version 3 (steps designate a runtime: an invoker
// and a runtime must agree on the envelopes they carry, though the frames
// did not change). Both sides decode strictly, so an invoker and a
// runtime of different versions cannot work together: the invoker checks
// the runtime's hello and says which binary to use. 5 added receipts
// (AttestReply key 3, LoadRequest key 6, RunReply key 11): a runtime
// loads nothing without a certificate of its receipt key. 6 added the
// sealing time of a step (RunReply key 12).
const Version = 6

// AttestRequest asks for evidence binding a KMS nonce and the runtime's
// ephemeral key.
type AttestRequest struct {
	Nonce []byte `cbor:"1,keyasint"`
}

// AttestReply carries the evidence.
type AttestReply struct {
	EphemeralKey []byte `cbor:"1,keyasint"`
	Evidence     []byte `cbor:"2,keyasint"`
	// ReceiptKey is the runtime's ed25519 receipt key, which the
	// evidence binds (wire.ReleaseReportData).
	ReceiptKey []byte `cbor:"3,keyasint,omitempty"`
}

// LoadRequest hands the runtime a function: the KMS's sealed key bundle and
// the sealed code from the store.
type LoadRequest struct {
	FunctionID   []byte `cbor:"1,keyasint"`
	Nonce        []byte `cbor:"2,keyasint"`
	SealedBundle []byte `cbor:"3,keyasint"`
	SealedCode   []byte `cbor:"4,keyasint"`
	// BundleSig is the KMS's signature of the release reply
	// (wire.ReleaseReplySigned), checked against the pinned KMS key.
	BundleSig []byte `cbor:"5,keyasint,omitempty"`
	// Cert is the KMS's certificate of the runtime's receipt key
	// (ReleaseReply.Cert, CBOR wire.SignedCert).
	Cert []byte `cbor:"6,keyasint,omitempty"`
}

// LoadReply reports how long loading took.
type LoadReply struct {
	CompileMs int64 `cbor:"1,keyasint"`
	// Engine, when set, is the SHA-256 of the JavaScript engine module the
	// function runs on, which the runtime does not have: nothing was
	// loaded; the invoker sends that engine (OpEngine) and the same
	// LoadRequest again.
	Engine []byte `cbor:"2,keyasint,omitempty"`
}

// EngineRequest hands the runtime a JavaScript engine module (public
// code, not sealed). The runtime compiles it and keeps it by its SHA-256:
// a function's sealed code names the engine it runs on by that digest.
type EngineRequest struct {
	Wasm []byte `cbor:"1,keyasint"`
}

// EngineReply reports the engine's digest and how long compiling took.
type EngineReply struct {
	Digest    []byte `cbor:"1,keyasint"`
	CompileMs int64  `cbor:"2,keyasint"`
}

// CodeNotLoaded refuses a step whose function is not loaded in the
// runtime: never loaded, or unloaded since (the runtime keeps a bounded
// number of functions). Nothing ran; the invoker loads it and sends the
// step again.
const CodeNotLoaded = "not_loaded"

// RunRequest runs one step.
type RunRequest struct {
	FunctionID []byte `cbor:"1,keyasint"`
	Envelope   []byte `cbor:"2,keyasint"`
	// Then continues the chain: the runtime runs the step, then each
	// function of Then in order on the previous step's sealed output, as
	// long as steps succeed (RunReply.More). Every step is checked as if
	// it had come alone.
	Then [][]byte `cbor:"3,keyasint,omitempty"`
}

// RunReply is the outcome of a step. Status is one of wire's Status*
// values. On a refusal Envelope and Logs are empty and ErrorCode says why.
type RunReply struct {
	Status       string `cbor:"1,keyasint"`
	Envelope     []byte `cbor:"2,keyasint,omitempty"`
	Logs         []byte `cbor:"3,keyasint,omitempty"`
	ErrorCode    string `cbor:"4,keyasint,omitempty"`
	ErrorMessage string `cbor:"5,keyasint,omitempty"`
	// Executed: every envelope check passed and the guest was started.
	// A refused step reports false; the attack suite counts on it.
	Executed bool `cbor:"6,keyasint,omitempty"`
	// Recycle: the runtime could not stop a guest it halted (see
	// sandbox.Engine.Runaway); the guest may keep a CPU and the runtime's
	// Go scheduler busy. The invoker must send later steps to a fresh
	// runtime and stop this one. It is a request to be replaced, never a
	// reason to trust the step's result less: the result is sealed.
	Recycle bool `cbor:"7,keyasint,omitempty"`
	// Start and End (unix ms) time the step; set for the steps of a
	// chain.
	Start int64 `cbor:"8,keyasint,omitempty"`
	End   int64 `cbor:"9,keyasint,omitempty"`
	// More are the replies of the steps of RunRequest.Then that ran.
	More []RunReply `cbor:"10,keyasint,omitempty"`
	// Receipt is the step's signed receipt, sealed for the owner.
	Receipt []byte `cbor:"11,keyasint,omitempty"`
	// SealMicros is the time the runtime spent sealing the step's result,
	// logs and receipt, in microseconds (timing only, as Start and End);
	// for the steps of a chain, without the receipt, which is signed and
	// sealed with the chain's others once the chain has run.
	SealMicros int64 `cbor:"12,keyasint,omitempty"`
}

var (
	encMode cbor.UserBufferEncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	if encMode, err = cbor.CoreDetEncOptions().UserBufferEncMode(); err != nil {
		panic(err)
	}
	if decMode, err = (cbor.DecOptions{
		MaxArrayElements: 1024,
		MaxMapPairs:      64,
		MaxNestedLevels:  16,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
	}).DecMode(); err != nil {
		panic(err)
	}
}

// Marshal encodes v as CBOR.
func Marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// Unmarshal decodes CBOR into v with bounded sizes.
func Unmarshal(b []byte, v any) error { return decMode.Unmarshal(b, v) }

// WriteFrame writes one frame. Callers serialise concurrent writers.
func WriteFrame(w io.Writer, f *Frame) error {
	// The frame is encoded after a 4-byte placeholder in a pooled buffer
	// and written with one call: no copy of the body, no buffer per frame.
	buf := framePool.Get().(*bytes.Buffer)
	defer putFrameBuffer(buf)
	buf.Reset()
	buf.Write([]byte{0, 0, 0, 0})
	if err := encMode.MarshalToBuffer(f, buf); err != nil {
		return fmt.Errorf("ipc: encode frame: %w", err)
	}
	b := buf.Bytes()
	if len(b)-4 > MaxFrame {
		return ErrFrameTooLarge
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("ipc: write frame: %w", err)
	}
	return nil
}

// framePool holds WriteFrame's buffers; one grown past maxPooledFrame (a
// large module's load) is dropped rather than kept.
var framePool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledFrame = 256 << 10

func putFrameBuffer(b *bytes.Buffer) {
	if b.Cap() <= maxPooledFrame {
		framePool.Put(b)
	}
}

// ReadFrame reads one frame, refusing frames over MaxFrame. It returns
// io.EOF when the pipe closed cleanly between frames.
func ReadFrame(r io.Reader) (*Frame, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("ipc: truncated frame header: %w", err)
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrame {
		return nil, ErrFrameTooLarge
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("ipc: truncated frame: %w", err)
	}
	f := new(Frame)
	if err := decMode.Unmarshal(buf, f); err != nil {
		return nil, fmt.Errorf("ipc: malformed frame: %w", err)
	}
	return f, nil
}
