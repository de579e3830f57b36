package kms

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/wire"
)

// handleRelease releases a function version's keys to an attested enclave
// runtime whose evidence satisfies the function's policy.
func (k *KMS) handleRelease(ctx context.Context, data []byte) (any, error) {
	req, err := bus.Decode[wire.ReleaseRequest](data)
	if err != nil {
		return nil, err
	}
	if len(req.FunctionID) != 16 {
		return nil, wire.Errorf(wire.CodeBadRequest, "function id must be 16 bytes")
	}
	fid := hex.EncodeToString(req.FunctionID)
	ephPub, err := x25519.NewPublicKey(req.EphemeralKey)
	if err != nil {
		return nil, wire.Errorf(wire.CodeBadRequest, "ephemeral key must be an X25519 HPKE public key")
	}
	if err := k.nonces.consume(req.Nonce); err != nil {
		return nil, err
	}
	claims, err := k.cfg.Verifiers.Verify(req.Evidence)
	if err != nil {
		k.log.Warn("key release refused: evidence rejected", "function", fid, "err", err)
		return nil, wire.Errorf(wire.CodeAttestation, "runtime evidence rejected (%v); accepted platforms: %v", err, k.cfg.Verifiers.Platforms())
	}
	want := wire.ReleaseReportData(req.Nonce, req.EphemeralKey, req.ReceiptKey)
	if subtle.ConstantTimeCompare(claims.ReportData[:], want[:]) != 1 {
		k.log.Warn("key release refused: report data mismatch", "function", fid)
		return nil, wire.Errorf(wire.CodeAttestation, "runtime evidence does not bind this request: its report data must be wire.ReleaseReportData(nonce, ephemeral key)")
	}
	var fs functionState
	if _, err := k.st.get(ctx, keyFunction(req.FunctionID), &fs); err != nil {
		if errors.Is(err, errNotFound) {
			return nil, wire.Errorf(wire.CodeNotFound, "function %s is unknown to the KMS", fid)
		}
		return nil, err
	}
	defer clearFunction(&fs)
	if err := checkPolicy(claims, &fs, req.Manifest); err != nil {
		k.log.Warn("key release refused", "function", fid, "namespace", fs.Record.Namespace,
			"measurement", hex.EncodeToString(claims.Measurement), "debug", claims.Debug,
			"security_version", claims.SecurityVersion, "err", err)
		return nil, err
	}
	gs, err := envelope.KeyFromBytes(k.secret)
	if err != nil {
		return nil, fmt.Errorf("kms: gateway secret: %w", err)
	}
	authKey := envelope.AuthKey(gs, fs.Record.Namespace).Bytes()
	defer clear(authKey)
	plain, err := bus.Marshal(&wire.KeyBundle{Record: fs.Record, PrivateKey: fs.PrivateKey, CodeKey: fs.CodeKey, AuthKey: authKey})
	if err != nil {
		return nil, fmt.Errorf("kms: encode key bundle: %w", err)
	}
	defer clear(plain)
	sealed, err := hpke.Seal(ephPub, hpke.HKDFSHA256(), hpke.AES256GCM(), wire.ReleaseInfo(req.Nonce, req.FunctionID), plain)
	if err != nil {
		return nil, wire.Errorf(wire.CodeBadRequest, "ephemeral key is not a usable X25519 public key")
	}
	k.log.Info("keys released", "function", fid, "namespace", fs.Record.Namespace, "action", fs.Record.Action,
		"platform", claims.Platform, "measurement", hex.EncodeToString(claims.Measurement))
	sig := ed25519.Sign(k.signKey, wire.ReleaseReplySigned(req.Nonce, req.FunctionID, req.EphemeralKey, sealed))
	reply := &wire.ReleaseReply{Sealed: sealed, Sig: sig}
	if len(req.ReceiptKey) > 0 {
		sc, err := k.certify(claims, req.EphemeralKey, req.ReceiptKey, fs.Record.Namespace)
		if err != nil {
			return nil, err
		}
		if reply.Cert, err = bus.Marshal(sc); err != nil {
			return nil, fmt.Errorf("kms: encode certificate: %w", err)
		}
		k.recordHolder(ctx, fs.Record.Namespace, envelope.RuntimeID(req.EphemeralKey), sc)
	}
	return reply, nil

}

// checkPolicy applies a function's policy to a runtime's claims. Its errors
// name the claim that failed and tell the namespace owner what to change.
func checkPolicy(c *tee.Claims, fs *functionState, manifest []byte) error {
	ce := checkClaims(c, &fs.Policy, manifest)
	if ce == nil {
		return nil
	}
	fid := hex.EncodeToString(fs.Record.FunctionID)
	hint := ""
	if ce.Claim == "measurement" {
		m := hex.EncodeToString(c.Measurement)
		hint = fmt.Sprintf(": the namespace owner can allow it with `clemmys policy allow %s`", m)
	}
	return wire.Errorf(wire.CodePolicy, "key release refused on %s by the policy of function %s (%s/%s): %s%s",
		ce.Claim, fid, fs.Record.Namespace, fs.Record.Action, ce.Detail, hint)
}
