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
//	  3: [+ bstr],      ; capsules, exactly one per chain step
//	  4: bstr,          ; body = nonce(12) || AES-256-GCM ciphertext||tag(16)
//	  5: bstr .size 32, ; auth: the gateway's tag over the header digest and the capsules
//	}
//	Header = {          ; authenticated (its digest is bound everywhere)
//	  1: uint,          ; version, = 1
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
//	           4: uint (key version) }
//	Limits = { 1: uint (timeout ms), 2: uint (memory MB), 3: uint (logs KB) }
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
//	capsule_j = HPKE base mode single-shot Seal to step j's function key,
//	           KDF HKDF-SHA256, AEAD AES-256-GCM,
//	           info = "clemmys/envelope/v1/capsule\x00" || D || u32(j),
//	           plaintext = k_j || k_{j+1}                     (64 bytes)
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
// Step j (0-based) receives only (k_j, k_{j+1}) through capsule j: it opens
// its input with k_j and seals its output for step j+1 with k_{j+1}. The
// holder of the request secret (the gateway, or the client in end-to-end
// mode) opens the final result with k_n.
//
// # Version history
//
//   - 1: initial format (single-shot HPKE capsule per step and request), with
//     the gateway's auth tag (key 5; added before the first release).
package envelope
