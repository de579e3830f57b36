package envelope

import (
	"crypto/hmac"
	"crypto/hpke"
	"crypto/subtle"
	"fmt"
	"io"
	"time"
)

// maxBodyPlaintext bounds inputs and outputs so that the envelope carrying
// them stays below MaxEnvelopeSize (headers and capsules take the rest).
const maxBodyPlaintext = MaxEnvelopeSize - 256<<10

func hpkeKDF() hpke.KDF { return hpke.HKDFSHA256() }

// Seal builds the envelope for step 0 (gateway side, or client side in
// end-to-end mode). It validates h, derives the step keys from
// requestSecret and h's digest, seals capsule j = k_j || k_{j+1} for
// pubs[j] and input under k_0 as the step-0 body. pubs[j] must be the
// function key of h.Chain[j] and belong to h.Suite.
//
// authKey is the namespace's AuthKey: the envelope carries its tag over the
// header digest and the capsules, which runtimes check before opening
// anything.
//
// Seal opens a new capsule session per function version of the chain (one
// HPKE encapsulation each) and forgets it: it costs what format version 1
// cost. A sender that seals many requests uses a [Sessions] instead, which
// reuses sessions across requests.
func Seal(h Header, requestSecret, authKey Key, pubs []hpke.PublicKey, input []byte) (*Envelope, error) {
	var s Sessions
	defer s.Clear()
	return s.Seal(h, requestSecret, authKey, pubs, input)
}

// SealUntagged is Seal for a sender that does not hold the namespace's
// authentication key — an owner sealing end to end (docs/protocol.md
// §15): the envelope carries no tag, and the gateway that authorizes the
// request adds it with (*Envelope).Tag, over the header digest and the
// capsules, without learning the request secret. requestSecret must be
// fresh and random (NewKey), known only to the sender.
func SealUntagged(h Header, requestSecret Key, pubs []hpke.PublicKey, input []byte) (*Envelope, error) {
	var s Sessions
	defer s.Clear()
	return s.seal(h, requestSecret, pubs, input)
}

// Tag sets the tag of a step-0 envelope sealed by SealUntagged: the
// namespace's authentication key over its header digest and capsules. It
// checks the header and the envelope's shape, not the capsules' contents
// (which only the runtimes open).
func (e *Envelope) Tag(authKey Key) error {
	if authKey.IsZero() {
		return wrap(ErrAuth, "no authentication key")
	}
	if err := e.Header.Validate(); err != nil {
		return err
	}
	if e.Step != 0 || len(e.Capsules) != len(e.Header.Chain) {
		return malformed("a step-0 envelope has one capsule per step")
	}
	for j, c := range e.Capsules {
		if len(c) != e.Header.Suite.capsuleSize() {
			return malformed("capsule %d is %d bytes, want %d", j, len(c), e.Header.Suite.capsuleSize())
		}
	}
	d, err := e.Header.Digest()
	if err != nil {
		return err
	}
	e.Auth = authTag(authKey, d, e.Capsules)
	return nil
}

// FunctionIdentity is what an enclave runtime holds for one loaded function
// version.
type FunctionIdentity struct {
	FunctionID []byte
	CodeDigest []byte
	KeyVersion uint32
	PrivateKey hpke.PrivateKey
	// AuthKey is the namespace's envelope authentication key (AuthKey),
	// released by the KMS with the function's keys. Required.
	AuthKey Key
	// Runtime is the id of the runtime holding the function (RuntimeID of
	// its ephemeral key); a step designated to another runtime is refused.
	// Required.
	Runtime []byte
	// Sessions caches the capsule sessions this runtime has opened, so it
	// decapsulates each session once. Optional: nil decapsulates for every
	// capsule. One cache may serve every function of a runtime.
	Sessions *OpenCache
}

// Opened is a checked and opened step (runtime side). It holds k_j and
// k_{j+1}, unexported; fmt prints neither them nor Input.
type Opened struct {
	Input     []byte
	Step      uint32
	RequestID []byte
	Expiry    time.Time

	header   Header
	digest   [32]byte
	auth     []byte
	capsules [][]byte
	kIn      Key // k_j
	kOut     Key // k_{j+1}
}

// Header returns a copy of the authenticated header.
func (o *Opened) Header() Header { return o.header.Clone() }

// Steps returns the length of the request's chain (without copying the
// header, as Header does).
func (o *Opened) Steps() uint32 { return uint32(len(o.header.Chain)) }

// Digest returns the header digest.
func (o *Opened) Digest() [32]byte { return o.digest }

// String never reveals input or keys.
func (o Opened) String() string {
	return fmt.Sprintf("envelope.Opened{Step:%d, redacted}", o.Step)
}

// Format never reveals input or keys, whatever the verb.
func (o Opened) Format(f fmt.State, _ rune) { io.WriteString(f, o.String()) }

// Open checks and opens step e.Step of an envelope for the function fn at
// time now. It performs every check of DESIGN §3.3 except the replay cache
// (the runtime owns that), in this order, each failure a typed error:
//
//  1. version (ErrVersion) and suite, including that fn's key belongs to
//     the header's suite (ErrSuite); then the rest of the header's
//     structure (ErrMalformed);
//  2. expiry: now must be before Expiry (ErrExpired);
//  3. Step < len(Chain) (ErrStep);
//  4. len(Capsules) == len(Chain) (ErrMalformed);
//  5. Chain[Step] names fn's FunctionID (ErrWrongFunction), CodeDigest
//     (ErrWrongCode) and KeyVersion (ErrKeyVersion), in constant time;
//     5a. the auth tag is the namespace's gateway tag over the header digest
//     (ErrAuth): only an attested gateway could have created the request;
//  6. capsule Step has the suite's exact size, its session key comes from
//     fn.Sessions (bound to function id, key version, session id and enc)
//     or from an HPKE decapsulation with fn.PrivateKey, and it opens under
//     that key with the header digest and Step as AAD (ErrCapsule); only
//     then is the session cached;
//  7. the body opens under k_Step with the header digest and Step as AAD
//     (ErrBody).
//
// Nothing is decrypted before the metadata checks pass.
func Open(e *Envelope, fn *FunctionIdentity, now time.Time) (*Opened, error) {
	if e == nil || fn == nil {
		return nil, malformed("nil envelope or function")
	}
	h := &e.Header
	if h.Version != Version {
		return nil, wrap(ErrVersion, "version %d, want %d", h.Version, Version)
	}
	if !h.Suite.Valid() {
		return nil, wrap(ErrSuite, "unknown suite %d", uint16(h.Suite))
	}
	if fn.PrivateKey == nil || fn.PrivateKey.KEM().ID() != h.Suite.kemID() {
		return nil, wrap(ErrSuite, "function key is not a %s key", h.Suite)
	}
	if err := h.Validate(); err != nil {
		return nil, err
	}
	if !now.Before(h.ExpiryTime()) {
		return nil, ErrExpired
	}
	if uint64(e.Step) >= uint64(len(h.Chain)) {
		return nil, wrap(ErrStep, "step %d of a %d-step chain", e.Step, len(h.Chain))
	}
	if len(e.Capsules) != len(h.Chain) {
		return nil, malformed("%d capsules for %d steps", len(e.Capsules), len(h.Chain))
	}
	st := &h.Chain[e.Step]
	if subtle.ConstantTimeCompare(st.FunctionID, fn.FunctionID) != 1 {
		return nil, ErrWrongFunction
	}
	if subtle.ConstantTimeCompare(st.CodeDigest, fn.CodeDigest) != 1 {
		return nil, ErrWrongCode
	}
	if subtle.ConstantTimeEq(int32(st.KeyVersion), int32(fn.KeyVersion)) != 1 {
		return nil, wrap(ErrKeyVersion, "step names key version %d, runtime holds %d", st.KeyVersion, fn.KeyVersion)
	}
	if len(fn.Runtime) != RuntimeIDSize || subtle.ConstantTimeCompare(st.Runtime, fn.Runtime) != 1 {
		return nil, ErrWrongRuntime
	}
	d, err := h.Digest()
	if err != nil {
		return nil, err
	}
	if fn.AuthKey.IsZero() || len(e.Auth) != authTagSize || !hmac.Equal(e.Auth, authTag(fn.AuthKey, d, e.Capsules)) {
		return nil, ErrAuth
	}

	kIn, kOut, err := openCapsule(fn, st, h.Suite, d, e.Step, e.Capsules[e.Step])
	if err != nil {
		return nil, err
	}

	input, err := openAEAD(kIn, bound(labelBody, d, e.Step), e.Body)
	if err != nil {
		return nil, ErrBody
	}
	hc := h.Clone()
	caps := make([][]byte, len(e.Capsules))
	for i, c := range e.Capsules {
		caps[i] = cloneBytes(c)
	}
	return &Opened{
		Input:     input,
		Step:      e.Step,
		RequestID: cloneBytes(h.RequestID),
		Expiry:    h.ExpiryTime(),
		header:    hc,
		digest:    d,
		auth:      cloneBytes(e.Auth),
		capsules:  caps,
		kIn:       kIn,
		kOut:      kOut,
	}, nil
}

// SealOutput returns the envelope for the next step (or, after the last
// step, the final result): the same header and capsules, Step+1, and output
// sealed under k_{Step+1} with the AAD for Step+1. Error results are sealed
// the same way.
func (o *Opened) SealOutput(output []byte) (*Envelope, error) {
	if o == nil || o.kOut.IsZero() {
		return nil, errZeroKey
	}
	if len(output) > maxBodyPlaintext {
		return nil, malformed("output is %d bytes, limit %d", len(output), maxBodyPlaintext)
	}
	next := o.Step + 1
	body, err := sealAEAD(o.kOut, bound(labelBody, o.digest, next), output)
	if err != nil {
		return nil, err
	}
	caps := make([][]byte, len(o.capsules))
	for i, c := range o.capsules {
		caps[i] = cloneBytes(c)
	}
	return &Envelope{Header: o.header.Clone(), Step: next, Capsules: caps, Body: body, Auth: cloneBytes(o.auth)}, nil
}

// SealLogs seals this step's logs for the owner, under a key derived from
// k_{Step+1} (label "logs-key") with AAD = logs label || digest || Step.
func (o *Opened) SealLogs(logs []byte) ([]byte, error) {
	if o == nil || o.kOut.IsZero() {
		return nil, errZeroKey
	}
	return sealAEAD(logsKey(o.kOut, o.Step), bound(labelLogs, o.digest, o.Step), logs)
}

// OpenResult opens a final result (gateway side, or client side in
// end-to-end mode). It checks e.Step == len(Chain) (ErrStep) and that
// e.Header's digest equals want, the digest of the header that was sent
// (ErrHeaderMismatch), then derives the keys and opens the body under k_n
// (ErrBody).
//
// Passing a zero want skips only the digest comparison. That is meant for
// reopening a stored record whose header is not otherwise at hand: the
// result is then still authenticated relative to e.Header (the keys are
// derived from its digest and the capsules bind it, so only a holder of the
// request secret could have created that header), but the caller must take
// e.Header — not some other copy — as the truth, and must have derived
// requestSecret from the request id it expects.
func OpenResult(e *Envelope, requestSecret Key, want [32]byte) ([]byte, error) {
	if e == nil {
		return nil, malformed("nil envelope")
	}
	if uint64(e.Step) != uint64(len(e.Header.Chain)) {
		return nil, wrap(ErrStep, "step %d is not the end of a %d-step chain", e.Step, len(e.Header.Chain))
	}
	return OpenOutput(e, requestSecret, want)
}

// OpenOutput opens the output of any step of a chain on the owner's side:
// the body of an envelope at step s (1 <= s <= len(Chain)) is step s-1's
// output, sealed under k_s. The owner of a sequence uses it to read a
// component's output and the error of a failed intermediate step.
// OpenResult is OpenOutput restricted to the final step; want works as
// there.
func OpenOutput(e *Envelope, requestSecret Key, want [32]byte) ([]byte, error) {
	out, _, err := OpenOutputKeys(e, requestSecret, want)
	return out, err
}

// OpenOutputKeys is OpenOutput that also returns the request's owner keys
// for e.Header, to open the logs and receipts of the same record without
// deriving them again.
func OpenOutputKeys(e *Envelope, requestSecret Key, want [32]byte) ([]byte, *OwnerKeys, error) {
	if e == nil {
		return nil, nil, malformed("nil envelope")
	}
	if e.Step == 0 || uint64(e.Step) > uint64(len(e.Header.Chain)) {
		return nil, nil, wrap(ErrStep, "step %d is not the output of a step of a %d-step chain", e.Step, len(e.Header.Chain))
	}
	k, err := NewOwnerKeys(&e.Header, requestSecret)
	if err != nil {
		return nil, nil, err
	}
	if want != ([32]byte{}) && subtle.ConstantTimeCompare(k.digest[:], want[:]) != 1 {
		return nil, nil, ErrHeaderMismatch
	}
	out, err := openAEAD(k.keys[e.Step], bound(labelBody, k.digest, e.Step), e.Body)
	if err != nil {
		return nil, nil, ErrBody
	}
	return out, k, nil
}

// OpenOutputOwned is OpenOutputKeys for the sender of the request, with
// the owner keys SealOwned returned: e's body is opened under them and
// their header, not under e's header, which it is not even decoded
// against. The header the output belongs to is k.Header(); e's own
// header, routing metadata the untrusted side could have changed, says
// nothing the caller may rely on (the body opens only if it was sealed
// for k's header and step e.Step).
func OpenOutputOwned(e *Envelope, k *OwnerKeys) ([]byte, error) {
	if e == nil || k == nil || k.header == nil {
		return nil, malformed("nil envelope or keys")
	}
	if e.Step == 0 || uint64(e.Step) > uint64(len(k.header.Chain)) {
		return nil, wrap(ErrStep, "step %d is not the output of a step of a %d-step chain", e.Step, len(k.header.Chain))
	}
	out, err := openAEAD(k.keys[e.Step], bound(labelBody, k.digest, e.Step), e.Body)
	if err != nil {
		return nil, ErrBody
	}
	return out, nil
}

// OwnerKeys are what the owner of a request (its gateway, or a client
// holding its request secret) opens its steps' logs and receipts with:
// the header's digest and step keys, derived once.
type OwnerKeys struct {
	header *Header
	digest [32]byte
	keys   []Key
}

// NewOwnerKeys derives the owner keys of the request with header h; the
// keys stay tied to h, which must not change while they are used.
func NewOwnerKeys(h *Header, requestSecret Key) (*OwnerKeys, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	d, err := h.Digest()
	if err != nil {
		return nil, err
	}
	keys, err := deriveStepKeys(requestSecret, d, len(h.Chain))
	if err != nil {
		return nil, err
	}
	return &OwnerKeys{header: h, digest: d, keys: keys}, nil
}

// wipe zeroes the step keys; a nil k is none.
func (k *OwnerKeys) wipe() {
	if k == nil {
		return
	}
	for _, key := range k.keys {
		key.wipe()
	}
}

// Header returns the header the keys are of.
func (k *OwnerKeys) Header() *Header { return k.header }

// Digest returns the header's digest.
func (k *OwnerKeys) Digest() [32]byte { return k.digest }

// OpenLogs opens logs sealed by SealLogs at step (ErrStep if step is not
// in the chain, ErrBody if they do not open).
func (k *OwnerKeys) OpenLogs(step uint32, sealed []byte) ([]byte, error) {
	return k.openForOwner(step, sealed, logsKey, labelLogs)
}

// OpenReceipt opens a receipt sealed by SealReceipt at step (errors as
// OpenLogs).
func (k *OwnerKeys) OpenReceipt(step uint32, sealed []byte) ([]byte, error) {
	return k.openForOwner(step, sealed, receiptKey, labelReceipt)
}

// openForOwner opens what step sealed for the owner under a key derived
// from k_{step+1} by derive, with AAD label || digest || step (logs,
// receipts).
func (k *OwnerKeys) openForOwner(step uint32, sealed []byte, derive func(Key, uint32) Key, label string) ([]byte, error) {
	if uint64(step) >= uint64(len(k.header.Chain)) {
		return nil, wrap(ErrStep, "step %d of a %d-step chain", step, len(k.header.Chain))
	}
	out, err := openAEAD(derive(k.keys[step+1], step), bound(label, k.digest, step), sealed)
	if err != nil {
		return nil, ErrBody
	}
	return out, nil
}

// OpenLogs opens logs sealed by SealLogs at the given step of the request
// with header h (ErrStep if step is not in the chain, ErrBody if they do not
// open).
func OpenLogs(h *Header, requestSecret Key, step uint32, sealed []byte) ([]byte, error) {
	k, err := NewOwnerKeys(h, requestSecret)
	if err != nil {
		return nil, err
	}
	return k.OpenLogs(step, sealed)
}

// SealReceipt seals this step's signed receipt for the owner, under a key
// derived from k_{Step+1} (label "receipt-key") with AAD = receipt label ||
// digest || Step: like the logs, only the holders of the request secret
// (the gateway, the owner) open it, and it cannot move to another step or
// request.
func (o *Opened) SealReceipt(receipt []byte) ([]byte, error) {
	if o == nil || o.kOut.IsZero() {
		return nil, errZeroKey
	}
	return sealAEAD(receiptKey(o.kOut, o.Step), bound(labelReceipt, o.digest, o.Step), receipt)
}

// OpenReceipt opens a receipt sealed by SealReceipt at the given step of
// the request with header h (ErrStep if step is not in the chain, ErrBody
// if it does not open).
func OpenReceipt(h *Header, requestSecret Key, step uint32, sealed []byte) ([]byte, error) {
	k, err := NewOwnerKeys(h, requestSecret)
	if err != nil {
		return nil, err
	}
	return k.OpenReceipt(step, sealed)
}
