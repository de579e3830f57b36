// Package envelope owns the wire format of sealed invocations: the
// authenticated plaintext header that the untrusted controller routes on,
// the per-step capsules that carry chain keys to enclave runtimes, the
// encrypted body, sealed logs, and function code at rest (DESIGN §3).
//
// It is a leaf package: it imports only the standard library and
// github.com/fxamacker/cbor/v2. Every primitive comes from the standard
// library (crypto/hpke, crypto/hkdf, crypto/aes, crypto/cipher, crypto/sha256).
//
// # Encoding
//
// Envelopes and headers are CBOR maps with small unsigned integer keys,
// encoded with RFC 8949 §4.2.1 core deterministic encoding. Unmarshal is
// strict: at most [MaxEnvelopeSize] bytes, no duplicate keys, no unknown
// keys, no tags, no indefinite lengths, bounded nesting and array lengths,
// and the input must be exactly the deterministic encoding of what it
// decodes to (so an envelope has one and only one byte representation).
//
//	Envelope = {
//	  1: Header,
//	  2: uint,          ; step index: the chain step the body is input for,
//	                    ; len(chain) for the final result
//	  3: [+ bstr],      ; capsules, exactly one per chain step (layout below)
//	  4: bstr,          ; body = nonce(12) || AES-256-GCM ciphertext||tag(16)
//	  5: bstr .size 32, ; auth: the gateway's tag over the header digest and the capsules
//	}
//	Header = {          ; authenticated (its digest is bound everywhere)
//	  1: uint,          ; version, = 3
//	  2: uint,          ; suite: 1 = X25519, 2 = ML-KEM-768+X25519 (X-Wing)
//	  3: bstr .size 16, ; request id, random
//	  4: tstr,          ; namespace (1..256 bytes)
//	  5: [+ Step],      ; chain, 1..64 steps
//	  6: int,           ; expiry, unix milliseconds (> 0)
//	  7: Limits,
//	}
//	Step   = { 1: tstr ("/ns/[pkg/]action", 2..1024 bytes),
//	           2: bstr .size 16 (function id),
//	           3: bstr .size 32 (code digest, SHA-256 of the wasm module),
//	           4: uint (key version),
//	           5: bstr .size 32 (runtime id: the one runtime that may run the step) }
//	Limits = { 1: uint (timeout ms), 2: uint (memory MB), 3: uint (logs KB) }
//
// A capsule is a fixed binary layout inside its bstr, of an exact size per
// suite (140 bytes for X25519, 1228 for X-Wing):
//
//	capsule_j = session id (16) || session enc (32 X25519, 1120 X-Wing)
//	            || nonce (12) || AES-256-GCM ciphertext of k_j || k_{j+1} (64) || tag (16)
//
// The session id and enc are authenticated by the auth tag (it covers the
// capsules) and bound into the session key (HPKE info and enc), not into
// the header digest: Seal does not change the header it is given.
//
// The position of the version (envelope key 1, header key 1) is fixed for
// all versions, so a runtime can always tell "newer version" (ErrVersion)
// from "garbage" (ErrMalformed).
//
// The step index is deliberately outside the header: it changes at every hop
// while the header does not. It is bound by the body's associated data and
// by the step keys.
//
// # Key schedule
//
// All labels are ASCII strings terminated by a zero byte, followed only by
// fixed-length fields; uint32 values are big-endian. With H = SHA-256 and
// D = the header digest:
//
//	D        = H("clemmys/envelope/v1/header\x00" || CBOR_det(header))
//	rs       = HKDF-SHA256(ikm = gateway secret, salt = "",
//	                       info = "clemmys/envelope/v1/request-secret\x00" || request id, 32)
//	prk      = HKDF-Extract-SHA256(ikm = rs, salt = D)
//	k_j      = HKDF-Expand-SHA256(prk, "clemmys/envelope/v1/step-key\x00" || u32(j), 32)
//	           for j = 0..n (n = len(chain)); DESIGN's k1..k(n+1) are k_0..k_n
//	session  = HPKE base mode SetupS to step j's function key pk_j
//	           (KEM of the suite, KDF HKDF-SHA256, AEAD export-only),
//	           info = "clemmys/envelope/v2/session\x00" || function id(16)
//	                  || u32(key version) || session id(16)      → enc
//	sk       = Export(session, "clemmys/envelope/v2/session-key\x00", 32)
//	capsule_j = sid || enc || AES-256-GCM(sk, random 96-bit nonce, k_j || k_{j+1},
//	           aad = "clemmys/envelope/v2/capsule\x00" || D || u32(j))
//	body(s)  = AES-256-GCM(k_s, random 96-bit nonce, input/output,
//	           aad = "clemmys/envelope/v1/body\x00" || D || u32(s))
//	logs_j   = AES-256-GCM(HKDF-SHA256(ikm = k_{j+1}, salt = "",
//	                       info = "clemmys/envelope/v1/logs-key\x00" || u32(j), 32),
//	           random nonce, logs, aad = "clemmys/envelope/v1/logs\x00" || D || u32(j))
//	ak       = HKDF-SHA256(ikm = gateway secret, salt = "",
//	                       info = "clemmys/envelope/v1/auth-key\x00" || namespace, 32)
//	C        = H(u32(len(capsule_0)) || capsule_0 || ... || u32(len(capsule_n-1)) || capsule_n-1)
//	auth     = HMAC-SHA256(ak, "clemmys/envelope/v1/auth\x00" || D || u32(n) || C)
//	code     = AES-256-GCM(code key, random nonce, wasm,
//	           aad = "clemmys/envelope/v1/code\x00" || function id(16) || code digest(32))
//
// The KMS releases ak to the enclave runtimes of the namespace together with
// each function's keys, and a runtime checks auth before it opens anything:
// a function's public key is public (the controller stores it), so without
// the tag anyone could seal an envelope to a function, run it on inputs of
// their choosing and read the output with the step keys they chose, or start
// a chain in its middle. Only attested gateways (and the KMS and the
// namespace's runtimes) hold ak. The tag covers the capsules too: a tag over
// the header alone would let whoever saw a genuine envelope keep its header
// and tag and seal a capsule of its own to the step's key (HPKE base mode
// does not authenticate the sender), run the step on a chosen input and read
// the output.
//
// # Capsule sessions
//
// A session (random 16-byte id, enc, session key sk) belongs to one
// function version (function id, key version, public key) and serves every
// capsule a sender seals to it until it rotates: [Sessions] (one per
// gateway process) rotates after DefaultSessionMaxAge (10 min) or
// DefaultSessionMaxUses (2^20) capsules, whichever is first, and holds at
// most DefaultMaxSessions; package-level Seal uses a fresh session per
// call. So the HPKE encapsulation happens once per (gateway, function
// version, epoch), and each capsule costs one AES-GCM seal. Random nonces:
// at most 2^20 per key keeps the collision probability below 2^-57.
//
// A runtime passes an [OpenCache] in FunctionIdentity.Sessions. Open looks
// the session up by (function id, key version, hash of the function's
// public key, session id); the entry is bound to SHA-256(enc), and a
// capsule naming a cached session id with another enc is refused
// (ErrCapsule). On a miss Open decapsulates enc with the function's private
// key and the info above, and caches the session only after the capsule
// opened (which happens only after the auth tag verified), so nothing
// forged enters the cache. Since every capsule carries its enc, a cache is
// only an optimization: an evicted, expired or never-seen session is
// decapsulated again. Entries are bounded (LRU, DefaultOpenCacheSize),
// expire after DefaultOpenCacheMaxAge, and are zeroized on eviction.
//
// Whoever learns a session key reads every capsule of that session: the
// step keys, hence the inputs, outputs and logs, of that function's step of
// every request the sender sealed in that epoch (at most 10 minutes and 2^20
// capsules, one function version). It does not learn the auth key, so it
// cannot create or alter requests. Rotation bounds the exposure; a session
// key is zeroized when it rotates out or is evicted, and both caches sweep
// out expired sessions at least once a minute while in use, also those of
// idle functions (best effort: Go may keep copies, e.g. AES key
// schedules). The function private key opens
// every session, as it opened every version 1 capsule: neither version has
// forward secrecy against it.
//
// Step j (0-based) receives only (k_j, k_{j+1}) through capsule j: it opens
// its input with k_j and seals its output for step j+1 with k_{j+1}. The
// holder of the request secret (the gateway, or the client in end-to-end
// mode) opens the final result with k_n.
//
// # Version history
//
//   - 1: initial format (single-shot HPKE capsule per step and request), with
//     the gateway's auth tag (key 5; added before the first release).
//   - 2: capsule sessions (DESIGN §3.4): a capsule is session id || enc ||
//     AES-256-GCM under a key exported from a cached HPKE session (labels
//     clemmys/envelope/v2/{session,session-key,capsule}); the CBOR maps,
//     every other label, the step keys, bodies, logs, code and the auth tag
//     are unchanged. Runtimes accept version 2 only: version 1 envelopes are
//     refused with ErrVersion (nothing had shipped; a version 1 envelope is
//     kept in testdata/v1 to test the refusal).
//   - 3: designated runtimes: every step names (Step key 5) the id of the
//     one enclave runtime that may run it, RuntimeID(its ephemeral key) =
//     SHA-256("clemmys/envelope/v3/runtime-id\x00" || key), and a runtime
//     refuses a step for another one (ErrWrongRuntime, after the function,
//     code and key version checks). With its replay cache, a step runs at
//     most once anywhere: replays to another runtime, another invoker, or
//     the same runtime restarted (a new key) are refused. Everything else
//     is unchanged; version 2 envelopes are refused with ErrVersion.
package envelope
