package kms

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/wire"
)

// MaxGatewayBody bounds the body of a gateway call.
const MaxGatewayBody = 64 << 10

// x25519 is the KEM of the ephemeral keys replies are sealed to (gateway
// reply keys and runtime ephemeral keys).
var x25519 = hpke.DHKEM(ecdh.X25519())

// handleGateway serves a privileged call of an attested gateway.
func (k *KMS) handleGateway(ctx context.Context, data []byte) (any, error) {
	call, err := bus.Decode[wire.GatewayCall](data)
	if err != nil {
		return nil, err
	}
	if len(call.Body) > MaxGatewayBody {
		return nil, wire.Errorf(wire.CodeTooLarge, "gateway call body exceeds %d bytes", MaxGatewayBody)
	}
	switch call.Op {
	case wire.OpCreateFunction, wire.OpGatewaySecret, wire.OpSetPolicy, wire.OpGetPolicy,
		wire.OpCommitVersion, wire.OpRetireAction, wire.OpLatestVersion, wire.OpCommitEntity, wire.OpCodeKey, wire.OpHolders:
	default:
		return nil, wire.Errorf(wire.CodeBadRequest, "unknown gateway op %q", truncate(call.Op, 64))
	}
	replyPub, err := x25519.NewPublicKey(call.ReplyKey)
	if err != nil {
		return nil, wire.Errorf(wire.CodeBadRequest, "reply key must be an X25519 HPKE public key")
	}
	if err := k.nonces.consume(call.Nonce); err != nil {
		return nil, err
	}
	claims, err := k.cfg.Verifiers.Verify(call.Evidence)
	if err != nil {
		k.log.Warn("gateway call refused: evidence rejected", "op", call.Op, "err", err)
		return nil, wire.Errorf(wire.CodeAttestation, "gateway evidence rejected (%v); accepted platforms: %v", err, k.cfg.Verifiers.Platforms())
	}
	want := wire.GatewayCallReportData(call.Nonce, call.ReplyKey, call.Op, call.Body)
	if subtle.ConstantTimeCompare(claims.ReportData[:], want[:]) != 1 {
		k.log.Warn("gateway call refused: report data mismatch", "op", call.Op)
		return nil, wire.Errorf(wire.CodeAttestation, "gateway evidence does not bind this call: its report data must be wire.GatewayCallReportData(nonce, reply key, op, body)")
	}
	mhex := hex.EncodeToString(claims.Measurement)
	if claims.Debug {
		k.log.Warn("gateway call refused: debug-mode gateway", "op", call.Op, "measurement", mhex)
		return nil, wire.Errorf(wire.CodePolicy, "gateway %s runs in a debug-mode TEE, whose memory the host can read; the KMS never answers a debug gateway", mhex)
	}
	if !tee.MeasurementIn(claims.Measurement, k.cfg.GatewayMeasurements) {
		k.log.Warn("gateway call refused: measurement not accepted", "op", call.Op, "measurement", mhex)
		return nil, wire.Errorf(wire.CodePolicy, "gateway measurement %s is not accepted by this KMS: the KMS operator can add it to the KMS's accepted gateway measurements", mhex)
	}
	body, err := k.dispatch(ctx, call.Op, call.Body)
	if err != nil {
		return nil, err
	}
	defer clear(body)
	sealed, err := k.sealReply(call.Nonce, call.ReplyKey, replyPub, body)
	if err != nil {
		return nil, err
	}
	k.log.Debug("gateway call served", "op", call.Op, "gateway", mhex)
	return &wire.GatewayReply{Sealed: sealed}, nil
}

// sealReply signs body for this call and seals it to the reply key.
func (k *KMS) sealReply(nonce, replyKey []byte, replyPub hpke.PublicKey, body []byte) ([]byte, error) {
	sig := ed25519.Sign(k.signKey, wire.GatewayReplySigned(nonce, replyKey, body))
	plain, err := bus.Marshal(&wire.SignedReply{Body: body, Sig: sig})
	if err != nil {
		return nil, fmt.Errorf("kms: encode reply: %w", err)
	}
	defer clear(plain)
	sealed, err := hpke.Seal(replyPub, hpke.HKDFSHA256(), hpke.AES256GCM(), wire.GatewayReplyInfo(nonce), plain)
	if err != nil {
		return nil, wire.Errorf(wire.CodeBadRequest, "reply key is not a usable X25519 public key")
	}
	return sealed, nil
}

func (k *KMS) dispatch(ctx context.Context, op string, body []byte) ([]byte, error) {
	var resp any
	switch op {
	case wire.OpCreateFunction:
		req, err := bus.Decode[wire.CreateFunction](body)
		if err != nil {
			return nil, err
		}
		cf, err := k.createFunction(ctx, req)
		if err != nil {
			return nil, err
		}
		resp = cf
	case wire.OpGatewaySecret:
		resp = &wire.GatewaySecret{Secret: k.secret}
	case wire.OpSetPolicy:
		req, err := bus.Decode[wire.SetPolicy](body)
		if err != nil {
			return nil, err
		}
		if err := validNamespace(req.Namespace); err != nil {
			return nil, err
		}
		if err := validatePolicy(&req.Policy); err != nil {
			return nil, err
		}
		if err := k.setPolicy(ctx, req.Namespace, req.Policy); err != nil {
			return nil, err
		}
		resp = &req.Policy
	case wire.OpGetPolicy:
		req, err := bus.Decode[wire.GetPolicy](body)
		if err != nil {
			return nil, err
		}
		if err := validNamespace(req.Namespace); err != nil {
			return nil, err
		}
		p, err := k.namespacePolicy(ctx, req.Namespace)
		if err != nil {
			return nil, err
		}
		resp = p
	case wire.OpCommitVersion, wire.OpRetireAction, wire.OpLatestVersion, wire.OpCommitEntity:
		lv, err := k.versionOp(ctx, op, body)
		if err != nil {
			return nil, err
		}
		resp = lv
	case wire.OpHolders:
		req, err := bus.Decode[wire.HoldersRequest](body)
		if err != nil {
			return nil, err
		}
		hl, err := k.holders(ctx, req)
		if err != nil {
			return nil, err
		}
		resp = hl
	case wire.OpCodeKey:

		req, err := bus.Decode[wire.CodeKeyRequest](body)
		if err != nil {
			return nil, err
		}
		ck, err := k.codeKey(ctx, req)
		if err != nil {
			return nil, err
		}
		resp = ck
	}
	out, err := bus.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("kms: encode %s reply: %w", op, err)
	}
	if cf, ok := resp.(*wire.CreatedFunction); ok {
		clear(cf.CodeKey)
	}
	if ck, ok := resp.(*wire.CodeKey); ok {
		clear(ck.CodeKey)
	}
	return out, nil
}

// createFunction creates a function version: a fresh id, an HPKE key pair
// of the requested suite, a code key, and the namespace's policy.
func (k *KMS) createFunction(ctx context.Context, req *wire.CreateFunction) (*wire.CreatedFunction, error) {
	if err := validNamespace(req.Namespace); err != nil {
		return nil, err
	}
	if req.Action == "" || len(req.Action) > MaxActionSize {
		return nil, wire.Errorf(wire.CodeBadRequest, "action name must be 1..%d bytes", MaxActionSize)
	}
	if len(req.CodeDigest) != 32 {
		return nil, wire.Errorf(wire.CodeBadRequest, "code digest must be a 32-byte SHA-256")
	}
	suite := envelope.Suite(req.Suite)
	if suite == 0 {
		suite = envelope.SuiteX25519
	}
	kem, err := suite.KEM()
	if err != nil {
		return nil, wire.Errorf(wire.CodeBadRequest, "unknown suite %d: use %d (%v) or %d (%v)", req.Suite,
			envelope.SuiteX25519, envelope.SuiteX25519, envelope.SuiteMLKEM768X25519, envelope.SuiteMLKEM768X25519)
	}
	p, err := k.namespacePolicy(ctx, req.Namespace)
	if err != nil {
		return nil, err
	}
	if policyEmpty(p) {
		return nil, wire.Errorf(wire.CodePolicy, "namespace %q has no policy and the KMS has no default policy: the namespace owner must allow a runtime first (`clemmys policy allow <measurement>`)", req.Namespace)
	}
	priv, err := kem.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("kms: generate function key: %w", err)
	}
	privBytes, err := priv.Bytes()
	if err != nil {
		return nil, fmt.Errorf("kms: encode function key: %w", err)
	}
	codeKey := envelope.NewKey()
	id := make([]byte, 16)
	rand.Read(id)
	rec := wire.FunctionRecord{
		FunctionID: id,
		Namespace:  req.Namespace,
		Action:     req.Action,
		KeyVersion: 1,
		CodeDigest: req.CodeDigest,
		Suite:      uint16(suite),
		PublicKey:  priv.PublicKey().Bytes(),
		Created:    k.cfg.Now().UnixMilli(),
	}
	fs := functionState{Record: rec, PrivateKey: privBytes, CodeKey: codeKey.Bytes(), Policy: *p}
	defer clearFunction(&fs)
	// Index first: an index entry without its function is harmless, a
	// function missing from the index would miss policy updates.
	if err := k.st.put(ctx, keyIndex(req.Namespace, id), &indexState{FunctionID: id}); err != nil {
		return nil, err
	}
	if err := k.st.create(ctx, keyFunction(id), &fs); err != nil {
		return nil, err
	}
	if _, err := k.syncFunctionPolicy(ctx, req.Namespace, id); err != nil {
		return nil, err
	}
	recBytes, err := bus.Marshal(&rec)
	if err != nil {
		return nil, fmt.Errorf("kms: encode record: %w", err)
	}
	k.log.Info("function created", "namespace", req.Namespace, "action", req.Action,
		"function", hex.EncodeToString(id), "suite", suite.String(), "code_digest", hex.EncodeToString(req.CodeDigest))
	return &wire.CreatedFunction{
		Record:  wire.SignedRecord{Record: recBytes, Sig: ed25519.Sign(k.signKey, wire.SignedRecordMessage(recBytes))},
		CodeKey: codeKey.Bytes(),
	}, nil
}

// codeKey returns the code key of a function version of req.Namespace, for
// a gateway that opens the sealed code for the action's owner. A function
// of another namespace is answered as unknown: the namespace is the one
// the gateway authenticated, so no caller reads another namespace's code.
func (k *KMS) codeKey(ctx context.Context, req *wire.CodeKeyRequest) (*wire.CodeKey, error) {
	if err := validNamespace(req.Namespace); err != nil {
		return nil, err
	}
	if len(req.FunctionID) != 16 {
		return nil, wire.Errorf(wire.CodeBadRequest, "function id must be 16 bytes")
	}
	fid := hex.EncodeToString(req.FunctionID)
	var fs functionState
	if _, err := k.st.get(ctx, keyFunction(req.FunctionID), &fs); err != nil {
		if errors.Is(err, errNotFound) {
			return nil, wire.Errorf(wire.CodeNotFound, "function %s is unknown to the KMS", fid)
		}
		return nil, err
	}
	defer clearFunction(&fs)
	if fs.Record.Namespace != req.Namespace {
		k.log.Warn("code key refused: another namespace's function", "function", fid, "namespace", req.Namespace)
		return nil, wire.Errorf(wire.CodeNotFound, "function %s is unknown to the KMS", fid)
	}
	k.log.Info("code key released to a gateway", "function", fid, "namespace", fs.Record.Namespace, "action", fs.Record.Action)
	return &wire.CodeKey{CodeKey: bytes.Clone(fs.CodeKey)}, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
