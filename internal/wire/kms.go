package wire

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
)

// KMS messages. See docs/protocol.md §Key release for the checks.

// KMSIdentity is the KMS's public identity. Evidence binds
// KMSIdentityReportData(SignKey) as report data, so a verifier that
// accepts the evidence's measurement can trust the key.
type KMSIdentity struct {
	SignKey  []byte `cbor:"1,keyasint"` // ed25519 public key: signs function records and gateway replies
	Evidence []byte `cbor:"2,keyasint"` // tee evidence
}

// Nonce is a fresh single-use KMS challenge (32 bytes, valid for a minute).
type Nonce struct {
	Nonce []byte `cbor:"1,keyasint"`
	// Replica is the KMS replica that issued it (hex, 16 characters): the
	// request the nonce is for goes to that replica's subjects
	// (SubjectKMSReleaseAt, SubjectKMSGatewayAt), the only one that
	// accepts it.
	Replica string `cbor:"2,keyasint"`
}

// SubjectKMSReleaseAt is the key release subject of KMS replica replica.
func SubjectKMSReleaseAt(replica string) string { return "clemmys.kms." + replica + ".release" }

// SubjectKMSGatewayAt is the gateway call subject of KMS replica replica.
func SubjectKMSGatewayAt(replica string) string { return "clemmys.kms." + replica + ".gateway" }

// ValidReplica reports whether s is a KMS replica id (16 lowercase hex
// characters), safe in a subject.
func ValidReplica(s string) bool {
	if len(s) != 16 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Policy says which enclave runtimes may receive a function's keys.
//
// Measurements, AllowDebug and MinSecurityVersion are the rules of the
// simulated TEE (sim). Runtimes on real hardware are judged by the typed
// rules of their platform, SNP or TDX (teepolicy.go); a policy without
// rules for a platform refuses every runtime of it.
type Policy struct {
	// Measurements are the accepted runtime measurements (hex-free raw
	// digests). A runtime upgrade adds its new measurement here.
	Measurements [][]byte `cbor:"1,keyasint"`
	// AllowDebug accepts evidence from debug-mode enclaves (sim only: a
	// debug SEV-SNP guest or TD is always refused).
	AllowDebug bool `cbor:"2,keyasint,omitempty"`
	// MinSecurityVersion is the lowest accepted TCB/security version.
	MinSecurityVersion uint32 `cbor:"3,keyasint,omitempty"`
	// SNP are the rules for AMD SEV-SNP runtimes (nil: none accepted).
	SNP *SNPPolicy `cbor:"4,keyasint,omitempty"`
	// TDX are the rules for Intel TDX runtimes (nil: none accepted).
	TDX *TDXPolicy `cbor:"5,keyasint,omitempty"`
	// Signers are trusted runtime release signers (release.go): a runtime
	// whose measurement a signed manifest of theirs lists is accepted as
	// if its measurement were in the policy.
	Signers []ReleaseSigner `cbor:"6,keyasint,omitempty"`
}

// FunctionRecord is the public description of a function version, signed by
// the KMS. Gateways seal capsules only to a PublicKey they found in a record
// whose signature verifies under the attested KMS identity.
type FunctionRecord struct {
	FunctionID []byte `cbor:"1,keyasint"` // 16 random bytes
	Namespace  string `cbor:"2,keyasint"`
	Action     string `cbor:"3,keyasint"` // name inside the namespace
	KeyVersion uint32 `cbor:"4,keyasint"`
	CodeDigest []byte `cbor:"5,keyasint"` // SHA-256 of the wasm module
	Suite      uint16 `cbor:"6,keyasint"`
	PublicKey  []byte `cbor:"7,keyasint"` // HPKE public key (the function key)
	Created    int64  `cbor:"8,keyasint"` // unix ms
}

// SignedRecord is a CBOR-encoded FunctionRecord and the KMS's ed25519
// signature over SignedRecordContext || Record.
type SignedRecord struct {
	Record []byte `cbor:"1,keyasint"`
	Sig    []byte `cbor:"2,keyasint"`
}

// SignedRecordContext is the domain-separation prefix of record signatures.
const SignedRecordContext = "clemmys/v1 function record\x00"

// GatewayCall is a privileged call of an attested gateway. Evidence binds
// SHA-512(GatewayCallContext || Nonce || ReplyKey || SHA-256(Op || 0 || Body))
// as report data; the KMS answers only gateways whose measurement it allows,
// sealed to ReplyKey.
type GatewayCall struct {
	Nonce    []byte `cbor:"1,keyasint"`
	ReplyKey []byte `cbor:"2,keyasint"` // ephemeral HPKE public key (SuiteX25519)
	Evidence []byte `cbor:"3,keyasint"`
	Op       string `cbor:"4,keyasint"`
	Body     []byte `cbor:"5,keyasint"` // CBOR of the op's request
}

// GatewayCallContext is the domain-separation prefix of a gateway call's
// report data.
const GatewayCallContext = "clemmys/v1 gateway call\x00"

// GatewayReply is HPKE-sealed (info GatewayReplyContext || Nonce) to the
// call's ReplyKey. Its plaintext is CBOR of SignedReply.
type GatewayReply struct {
	Sealed []byte `cbor:"1,keyasint"`
}

// GatewayReplyContext is the HPKE info prefix and signature prefix of
// gateway replies.
const GatewayReplyContext = "clemmys/v1 gateway reply\x00"

// SignedReply is signed by the KMS identity key over
// GatewayReplyContext || Nonce || ReplyKey || Body, so a gateway knows the
// reply came from the attested KMS and answers its own call.
type SignedReply struct {
	Body []byte `cbor:"1,keyasint"`
	Sig  []byte `cbor:"2,keyasint"`
}

// Gateway ops.
const (
	OpCreateFunction = "create_function" // CreateFunction → CreatedFunction
	OpGatewaySecret  = "gateway_secret"  // (none) → GatewaySecret
	OpSetPolicy      = "set_policy"      // SetPolicy → Policy
	OpGetPolicy      = "get_policy"      // GetPolicy → Policy
	// The version registry: the newest function version of an action that
	// was stored, and when it was deleted (rollback protection that
	// outlives a gateway and is shared by its replicas).
	OpCommitVersion = "commit_version" // CommitVersion → LatestVersion
	OpRetireAction  = "retire_action"  // RetireAction → LatestVersion
	OpLatestVersion = "latest_version" // LatestRequest → LatestVersion
	OpCodeKey       = "code_key"       // CodeKeyRequest → CodeKey
	// OpCommitEntity records the generation of a rule, package or action
	// entity (EntityKey) the gateway stored; retire_action and
	// latest_version take entity keys too.
	OpCommitEntity = "commit_entity" // CommitEntity → LatestVersion
)

// Entity kinds of the version registry: an entity's registry name is
// EntityKey(kind, name). Their ':' cannot occur in an action name, so an
// entity's entry never mixes with an action's function versions.
const (
	EntityRule    = "rule"
	EntityPackage = "package"
	EntityAction  = "action"
)

// EntityKey is the registry name of entity name ("pkg/a" for an action in
// a package) of a kind.
func EntityKey(kind, name string) string { return kind + ":" + name }

// CommitEntity records that the gateway stored generation Generation of
// entity Entity (EntityKey) of Namespace: the entity's latest, unless a
// newer one was committed. Generations are the gateway's, covered by the
// entity's MAC (gateway/entityversions.go).
type CommitEntity struct {
	Namespace  string `cbor:"1,keyasint"`
	Entity     string `cbor:"2,keyasint"`
	Generation int64  `cbor:"3,keyasint"`
}

// CommitVersion records that function version FunctionID (which the KMS
// created) is now its action's stored version: the action's latest, unless
// a newer one was committed.
type CommitVersion struct {
	FunctionID []byte `cbor:"1,keyasint"`
}

// RetireAction records that action Namespace/Action was deleted while its
// newest version was created at Created (unix ms, the KMS's clock): that
// version and every older one are dead.
type RetireAction struct {
	Namespace string `cbor:"1,keyasint"`
	Action    string `cbor:"2,keyasint"`
	Created   int64  `cbor:"3,keyasint"`
}

// LatestRequest asks for the registry entry of an action.
type LatestRequest struct {
	Namespace string `cbor:"1,keyasint"`
	Action    string `cbor:"2,keyasint"`
}

// LatestVersion is an action's registry entry (zero: none known): a
// gateway refuses a function record created before Created, or at or
// before Deleted.
type LatestVersion struct {
	Created int64 `cbor:"1,keyasint,omitempty"` // unix ms of the newest committed version
	Deleted int64 `cbor:"2,keyasint,omitempty"` // versions created up to then were deleted
}

// CodeKeyRequest asks for the code key of a function version, so that the
// gateway can open its sealed code for the action's owner (GET of an
// action with its code). The KMS answers only if the function belongs to
// Namespace: the gateway names the authenticated caller's namespace.
type CodeKeyRequest struct {
	Namespace  string `cbor:"1,keyasint"`
	FunctionID []byte `cbor:"2,keyasint"`
}

// CodeKey is the code key of a function version.
type CodeKey struct {
	CodeKey []byte `cbor:"1,keyasint"`
}

// CreateFunction asks the KMS for a new function version.
type CreateFunction struct {
	Namespace  string `cbor:"1,keyasint"`
	Action     string `cbor:"2,keyasint"`
	CodeDigest []byte `cbor:"3,keyasint"`
	Suite      uint16 `cbor:"4,keyasint"`
}

// CreatedFunction is the KMS's answer: the signed public record and the code
// key the gateway encrypts the module with (then forgets).
type CreatedFunction struct {
	Record  SignedRecord `cbor:"1,keyasint"`
	CodeKey []byte       `cbor:"2,keyasint"`
}

// GatewaySecret is the secret from which gateways derive per-request
// secrets; every attested gateway replica gets the same one.
type GatewaySecret struct {
	Secret []byte `cbor:"1,keyasint"`
}

// SetPolicy replaces a namespace's policy, and the policy of every function
// version of the namespace.
type SetPolicy struct {
	Namespace string `cbor:"1,keyasint"`
	Policy    Policy `cbor:"2,keyasint"`
}

// GetPolicy asks for a namespace's policy.
type GetPolicy struct {
	Namespace string `cbor:"1,keyasint"`
}

// ReleaseRequest asks for a function's keys on behalf of an enclave runtime.
// Evidence binds ReleaseReportData(Nonce, EphemeralKey).
type ReleaseRequest struct {
	Nonce        []byte `cbor:"1,keyasint"`
	EphemeralKey []byte `cbor:"2,keyasint"` // runtime's HPKE public key (SuiteX25519)
	Evidence     []byte `cbor:"3,keyasint"`
	FunctionID   []byte `cbor:"4,keyasint"`
	// Manifest is the runtime's signed release manifest (CBOR
	// SignedManifest), if its release has one; public, forwarded by the
	// invoker.
	Manifest []byte `cbor:"5,keyasint,omitempty"`
	// ReceiptKey is the runtime's ed25519 receipt key, which Evidence
	// binds too: the KMS certifies it in ReleaseReply.Cert.
	ReceiptKey []byte `cbor:"6,keyasint,omitempty"`
}

// ReleaseContext is the domain-separation prefix of the release report data
// and the HPKE info prefix of the sealed bundle.
const ReleaseContext = "clemmys/v1 key release\x00"

// ReleaseReply carries a KeyBundle sealed with HPKE to the runtime's
// ephemeral key, info ReleaseContext || Nonce || FunctionID, and the KMS
// identity key's signature over ReleaseReplySigned(...), by which the
// runtime, which pins that key, knows the keys come from the KMS (a rogue
// KMS could seal to the runtime's public ephemeral key too).
type ReleaseReply struct {
	Sealed []byte `cbor:"1,keyasint"`
	Sig    []byte `cbor:"2,keyasint,omitempty"`
	// Cert is the CBOR SignedCert of the request's ReceiptKey.
	Cert []byte `cbor:"3,keyasint,omitempty"`
}

// ReleaseReplyContext is the domain-separation prefix of release reply
// signatures.
const ReleaseReplyContext = "clemmys/v1 key release reply\x00"

// ReleaseReplySigned is what the KMS signs in a release reply:
// ReleaseReplyContext || nonce (32) || functionID (16) || ephemeralKey
// (32) || sealed. The fixed sizes make the concatenation unambiguous.
func ReleaseReplySigned(nonce, functionID, ephemeralKey, sealed []byte) []byte {
	return concat([]byte(ReleaseReplyContext), nonce, functionID, ephemeralKey, sealed)
}

// KeyBundle is what an attested runtime receives for one function version.
type KeyBundle struct {
	Record     FunctionRecord `cbor:"1,keyasint"`
	PrivateKey []byte         `cbor:"2,keyasint"` // HPKE private key of the function
	CodeKey    []byte         `cbor:"3,keyasint"`
	// AuthKey is the namespace's envelope authentication key
	// (envelope.AuthKey of the gateway secret): the runtime runs only
	// envelopes tagged with it.
	AuthKey []byte `cbor:"4,keyasint"`
}

// KMSIdentityContext is the domain-separation prefix of the KMS identity
// report data.
const KMSIdentityContext = "clemmys/v1 kms identity\x00"

// KMSIdentityReportData is the report data the KMS's evidence binds.
func KMSIdentityReportData(signKey []byte) [64]byte {
	return sha512.Sum512(concat([]byte(KMSIdentityContext), signKey))
}

// GatewayCallReportData is the report data a gateway call's evidence binds.
func GatewayCallReportData(nonce, replyKey []byte, op string, body []byte) [64]byte {
	bd := sha256.Sum256(concat([]byte(op), []byte{0}, body))
	return sha512.Sum512(concat([]byte(GatewayCallContext), lp(nonce), lp(replyKey), bd[:]))
}

// ReleaseReportData is the report data a key-release evidence binds: the
// KMS nonce, the runtime's ephemeral key and, when it has one, its
// receipt key (receipt.go; without one the KMS certifies no receipt key).
func ReleaseReportData(nonce, ephemeralKey, receiptKey []byte) [64]byte {
	if len(receiptKey) == 0 {
		return sha512.Sum512(concat([]byte(ReleaseContext), lp(nonce), lp(ephemeralKey)))
	}
	return sha512.Sum512(concat([]byte(ReleaseContext), lp(nonce), lp(ephemeralKey), lp(receiptKey)))
}

// lp length-prefixes b (4 bytes, big endian) so concatenations are
// unambiguous.
func lp(b []byte) []byte {
	out := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(out, uint32(len(b)))
	copy(out[4:], b)
	return out
}

func concat(parts ...[]byte) []byte {
	var n int
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// GatewayReplyInfo is the HPKE info of a gateway reply:
// GatewayReplyContext || nonce.
func GatewayReplyInfo(nonce []byte) []byte {
	return concat([]byte(GatewayReplyContext), nonce)
}

// GatewayReplySigned is what the KMS signs in a gateway reply:
// GatewayReplyContext || nonce || replyKey || body. The nonce (32 bytes)
// and the X25519 reply key (32 bytes) have fixed sizes, so the
// concatenation is unambiguous.
func GatewayReplySigned(nonce, replyKey, body []byte) []byte {
	return concat([]byte(GatewayReplyContext), nonce, replyKey, body)
}

// SignedRecordMessage is what the KMS signs in a SignedRecord:
// SignedRecordContext || record.
func SignedRecordMessage(record []byte) []byte {
	return concat([]byte(SignedRecordContext), record)
}

// ReleaseInfo is the HPKE info of a sealed KeyBundle:
// ReleaseContext || nonce || functionID (32 and 16 bytes).
func ReleaseInfo(nonce, functionID []byte) []byte {
	return concat([]byte(ReleaseContext), nonce, functionID)
}
