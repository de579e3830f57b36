package wire

// Signed runtime releases (docs/protocol.md §Runtime releases).
//
// A policy may trust a release signer (an ed25519 key of whoever builds
// the enclave runtime) with a minimum release version, in addition to, or
// instead of, exact measurements: like SGX's MRSIGNER + ISVSVN. The signer
// publishes, for each release, a signed manifest of the measurements the
// release's runtimes have on each platform. The manifest is public; the
// invoker forwards it with each key release (ReleaseRequest.Manifest) and
// the KMS accepts a runtime whose verified measurement the manifest lists,
// if a signer the function's policy trusts signed it with a version at
// least the signer's minimum. An upgrade signed by the release key then
// needs no owner action, and a runtime nobody signed gets no key.

// ReleaseSigner is a trusted release signer of a policy.
type ReleaseSigner struct {
	PublicKey  []byte `cbor:"1,keyasint"`           // ed25519
	MinVersion uint32 `cbor:"2,keyasint,omitempty"` // lowest accepted release version
}

// ReleaseManifest lists the measurements of one runtime release.
type ReleaseManifest struct {
	Version  uint32          `cbor:"1,keyasint"` // release (security) version
	Runtimes []ManifestEntry `cbor:"2,keyasint"`
	Note     string          `cbor:"3,keyasint,omitempty"` // e.g. "clemmys-enclave 0.4.0"
}

// ManifestEntry is one runtime of a release: its platform ("sim",
// "sev-snp", "tdx") and its measurement there (tee.Claims.Measurement).
type ManifestEntry struct {
	Platform    string `cbor:"1,keyasint"`
	Measurement []byte `cbor:"2,keyasint"`
}

// SignedManifest is a CBOR ReleaseManifest and the signer's ed25519
// signature over ManifestContext || Manifest.
type SignedManifest struct {
	Manifest []byte `cbor:"1,keyasint"`
	Sig      []byte `cbor:"2,keyasint"`
}

// ManifestContext is the domain-separation prefix of manifest signatures.
const ManifestContext = "clemmys/v1 runtime release manifest\x00"

// MaxManifestSize bounds a signed manifest on the wire.
const MaxManifestSize = 16 << 10

// MaxManifestEntries bounds the runtimes a manifest lists.
const MaxManifestEntries = 64

// ManifestMessage is what a release signer signs.
func ManifestMessage(manifest []byte) []byte {
	return concat([]byte(ManifestContext), manifest)
}
