package kms

import (
	"crypto/ed25519"
	"fmt"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/wire"
)

// MaxSigners bounds the release signers of a policy.
const MaxSigners = 8

// vouched reports whether a release signer the policy trusts vouches for
// a runtime of platform with measurement m, by the signed manifest the
// release request carries. why says, when not, what was missing (for the
// refusal message).
func vouched(signers []wire.ReleaseSigner, manifest []byte, platform string, m []byte) (bool, string) {
	if len(signers) == 0 {
		return false, ""
	}
	if len(manifest) == 0 {
		return false, "; the policy trusts release signers, but the runtime came with no signed release manifest"
	}
	if len(manifest) > wire.MaxManifestSize {
		return false, "; the runtime's release manifest is too large"
	}
	var sm wire.SignedManifest
	if err := bus.Unmarshal(manifest, &sm); err != nil || len(sm.Sig) != ed25519.SignatureSize {
		return false, "; the runtime's release manifest is malformed"
	}
	msg := wire.ManifestMessage(sm.Manifest)
	why := "; its release manifest is not signed by a release signer the policy trusts"
	for _, s := range signers {
		if len(s.PublicKey) != ed25519.PublicKeySize || !ed25519.Verify(s.PublicKey, msg, sm.Sig) {
			continue
		}
		var rm wire.ReleaseManifest
		if err := bus.Unmarshal(sm.Manifest, &rm); err != nil || len(rm.Runtimes) > wire.MaxManifestEntries {
			return false, "; its signed release manifest is malformed"
		}
		if rm.Version < s.MinVersion {
			why = fmt.Sprintf("; its release (version %d) is older than the minimum version %d the policy trusts of its signer", rm.Version, s.MinVersion)
			continue
		}
		var listed [][]byte
		for _, e := range rm.Runtimes {
			if e.Platform == platform {
				listed = append(listed, e.Measurement)
			}
		}
		if tee.MeasurementIn(m, listed) {
			return true, ""
		}
		why = fmt.Sprintf("; its signed release manifest (version %d) does not list this %s measurement", rm.Version, platform)
	}
	return false, why
}

func validateSigners(p *wire.Policy) error {
	if len(p.Signers) > MaxSigners {
		return wire.Errorf(wire.CodeBadRequest, "a policy trusts at most %d release signers", MaxSigners)
	}
	for i, s := range p.Signers {
		if len(s.PublicKey) != ed25519.PublicKeySize {
			return wire.Errorf(wire.CodeBadRequest, "release signer %d must be a %d-byte ed25519 public key", i, ed25519.PublicKeySize)
		}
	}
	return nil
}
