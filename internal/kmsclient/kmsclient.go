// Package kmsclient is how an attested gateway talks to the KMS. It verifies
// the KMS's attestation evidence and identity key (Connect), and makes
// gateway calls: each call carries a fresh KMS nonce, a fresh ephemeral
// X25519 HPKE reply key and the gateway's own evidence binding both and the
// request; the reply is sealed to the reply key and signed by the attested
// KMS identity. The untrusted bus sees only ciphertext and cannot answer in
// the KMS's name.
//
// The gateway imports this package, never package kms: services talk over
// the bus only.
package kmsclient

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/wire"
)

// Config configures a client.
type Config struct {
	Conn            *nats.Conn
	Attester        tee.Attester  // the gateway's own
	Verifiers       *tee.Registry // to verify the KMS's evidence
	KMSMeasurements [][]byte      // accepted KMS measurements
	Log             *slog.Logger
}

// Errors callers may branch on. KMS refusals are *wire.Error.
var (
	// ErrNotConnected: Connect has not succeeded yet.
	ErrNotConnected = errors.New("kmsclient: not connected to an attested KMS")
	// ErrUntrustedKMS: the KMS identity's evidence does not verify, names a
	// measurement that is not accepted, or does not bind the identity key.
	ErrUntrustedKMS = errors.New("kmsclient: KMS identity not trusted")
	// ErrBadReply: a reply does not open with the call's key, is not signed
	// by the attested KMS identity, or is malformed.
	ErrBadReply = errors.New("kmsclient: KMS reply rejected")
	// ErrBadRecord: a function record's signature does not verify or the
	// record is malformed.
	ErrBadRecord = errors.New("kmsclient: function record rejected")
)

// MaxSealedReply bounds a sealed reply accepted from the bus.
const MaxSealedReply = 1 << 20

// x25519 is the KEM of reply keys.
var x25519 = hpke.DHKEM(ecdh.X25519())

// Client is a gateway's connection to the KMS. It is safe for concurrent use.
type Client struct {
	cfg Config
	log *slog.Logger

	mu       sync.RWMutex
	signKey  ed25519.PublicKey // guarded by mu; nil until Connect succeeds
	identity *tee.Claims       // guarded by mu
	evidence []byte            // guarded by mu: the identity's evidence
}

// New returns a client; call Connect before anything else.
func New(cfg Config) *Client {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg.KMSMeasurements = slices.Clone(cfg.KMSMeasurements)
	return &Client{cfg: cfg, log: cfg.Log}
}

// Connect fetches the KMS identity and verifies its evidence (platform
// accepted by Verifiers, measurement in KMSMeasurements, not debug, report
// data binding the identity key). It retries while the KMS is unreachable,
// until ctx is done; a KMS that answers with an identity that is not
// trusted is an error at once (wrapping ErrUntrustedKMS), not a retry.
func (c *Client) Connect(ctx context.Context) error {
	backoff := 50 * time.Millisecond
	for {
		var id wire.KMSIdentity
		err := bus.Call(ctx, c.cfg.Conn, wire.SubjectKMSIdentity, struct{}{}, &id)
		if err == nil {
			pub, claims, err := c.verifyIdentity(&id)
			if err != nil {
				c.log.Error("KMS identity refused", "err", err)
				return err
			}
			c.mu.Lock()
			c.signKey, c.identity, c.evidence = pub, claims, slices.Clone(id.Evidence)

			c.mu.Unlock()
			c.log.Info("connected to an attested KMS", "platform", claims.Platform,
				"measurement", hex.EncodeToString(claims.Measurement), "sign_key", hex.EncodeToString(pub))
			return nil
		}
		c.log.Debug("KMS not reachable yet", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("kmsclient: no KMS answered: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (c *Client) verifyIdentity(id *wire.KMSIdentity) (ed25519.PublicKey, *tee.Claims, error) {
	if c.cfg.Verifiers == nil {
		return nil, nil, fmt.Errorf("%w: no verifiers configured", ErrUntrustedKMS)
	}
	if len(id.SignKey) != ed25519.PublicKeySize {
		return nil, nil, fmt.Errorf("%w: identity key is not an ed25519 public key", ErrUntrustedKMS)
	}
	claims, err := c.cfg.Verifiers.Verify(id.Evidence)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrUntrustedKMS, err)
	}
	want := wire.KMSIdentityReportData(id.SignKey)
	if !bytes.Equal(claims.ReportData[:], want[:]) {
		return nil, nil, fmt.Errorf("%w: evidence does not bind the identity key", ErrUntrustedKMS)
	}
	m := hex.EncodeToString(claims.Measurement)
	if claims.Debug {
		return nil, nil, fmt.Errorf("%w: KMS %s runs in a debug-mode TEE", ErrUntrustedKMS, m)
	}
	if !tee.MeasurementIn(claims.Measurement, c.cfg.KMSMeasurements) {
		return nil, nil, fmt.Errorf("%w: KMS measurement %s is not among the accepted KMS measurements", ErrUntrustedKMS, m)
	}
	return slices.Clone(ed25519.PublicKey(id.SignKey)), claims, nil
}

// SignKey returns the attested KMS identity key, or nil before Connect.
func (c *Client) SignKey() ed25519.PublicKey {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Clone(c.signKey)
}

// Identity returns the claims of the KMS's evidence, or nil before Connect.
func (c *Client) Identity() *tee.Claims {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.identity == nil {
		return nil
	}
	cl := *c.identity
	cl.Measurement = slices.Clone(cl.Measurement)
	return &cl
}

// CreateFunction asks the KMS for a new function version. It returns the
// verified record, the signed record to store with the action, and the code
// key to encrypt the module with (then forget).
func (c *Client) CreateFunction(ctx context.Context, req wire.CreateFunction) (*wire.FunctionRecord, wire.SignedRecord, envelope.Key, error) {
	var cf wire.CreatedFunction
	if err := c.call(ctx, wire.OpCreateFunction, &req, &cf); err != nil {
		return nil, wire.SignedRecord{}, envelope.Key{}, err
	}
	defer clear(cf.CodeKey)
	rec, err := c.VerifyRecord(cf.Record)
	if err != nil {
		return nil, wire.SignedRecord{}, envelope.Key{}, err
	}
	suite := req.Suite
	if suite == 0 {
		suite = uint16(envelope.SuiteX25519)
	}
	if rec.Namespace != req.Namespace || rec.Action != req.Action || !bytes.Equal(rec.CodeDigest, req.CodeDigest) || rec.Suite != suite {
		return nil, wire.SignedRecord{}, envelope.Key{}, fmt.Errorf("%w: the record does not describe the requested function", ErrBadReply)
	}
	key, err := envelope.KeyFromBytes(cf.CodeKey)
	if err != nil {
		return nil, wire.SignedRecord{}, envelope.Key{}, fmt.Errorf("%w: malformed code key", ErrBadReply)
	}
	return rec, cf.Record, key, nil
}

// GatewaySecret fetches the secret gateways derive request secrets from.
func (c *Client) GatewaySecret(ctx context.Context) (envelope.Key, error) {
	var gs wire.GatewaySecret
	if err := c.call(ctx, wire.OpGatewaySecret, struct{}{}, &gs); err != nil {
		return envelope.Key{}, err
	}
	defer clear(gs.Secret)
	k, err := envelope.KeyFromBytes(gs.Secret)
	if err != nil {
		return envelope.Key{}, fmt.Errorf("%w: malformed gateway secret", ErrBadReply)
	}
	return k, nil
}

// CodeKey fetches the code key of function version functionID of
// namespace ns (the KMS refuses a function of another namespace), to open
// its sealed code for its owner. The caller clears the key when done.
func (c *Client) CodeKey(ctx context.Context, ns string, functionID []byte) (envelope.Key, error) {
	var ck wire.CodeKey
	if err := c.call(ctx, wire.OpCodeKey, &wire.CodeKeyRequest{Namespace: ns, FunctionID: functionID}, &ck); err != nil {
		return envelope.Key{}, err
	}
	defer clear(ck.CodeKey)
	k, err := envelope.KeyFromBytes(ck.CodeKey)
	if err != nil {
		return envelope.Key{}, fmt.Errorf("%w: malformed code key", ErrBadReply)
	}
	return k, nil
}

// Holders lists the runtimes the KMS released keys of namespace ns to
// recently (with the KMS's certificates of their receipt keys).
func (c *Client) Holders(ctx context.Context, ns string) (*wire.HolderList, error) {
	var hl wire.HolderList
	if err := c.call(ctx, wire.OpHolders, &wire.HoldersRequest{Namespace: ns}, &hl); err != nil {
		return nil, err
	}
	return &hl, nil
}

// IdentityEvidence returns the KMS identity's evidence as the KMS sent
// it (verified by Connect), or nil before Connect.
func (c *Client) IdentityEvidence() []byte {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Clone(c.evidence)
}

// SetPolicy replaces a namespace's policy and the policy of each of its
// function versions; it returns the stored policy.
func (c *Client) SetPolicy(ctx context.Context, req wire.SetPolicy) (*wire.Policy, error) {
	var p wire.Policy
	if err := c.call(ctx, wire.OpSetPolicy, &req, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// GetPolicy returns a namespace's policy (the KMS's default policy if the
// namespace has none).
func (c *Client) GetPolicy(ctx context.Context, namespace string) (*wire.Policy, error) {
	var p wire.Policy
	if err := c.call(ctx, wire.OpGetPolicy, &wire.GetPolicy{Namespace: namespace}, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// CommitVersion records in the KMS's version registry that function
// version fid is its action's stored version, and returns the action's
// entry.
func (c *Client) CommitVersion(ctx context.Context, fid []byte) (*wire.LatestVersion, error) {
	var lv wire.LatestVersion
	if err := c.call(ctx, wire.OpCommitVersion, &wire.CommitVersion{FunctionID: fid}, &lv); err != nil {
		return nil, err
	}
	return &lv, nil
}

// RetireAction records that an action whose newest version was created at
// created was deleted, and returns the action's entry.
func (c *Client) RetireAction(ctx context.Context, ns, action string, created int64) (*wire.LatestVersion, error) {
	var lv wire.LatestVersion
	if err := c.call(ctx, wire.OpRetireAction, &wire.RetireAction{Namespace: ns, Action: action, Created: created}, &lv); err != nil {
		return nil, err
	}
	return &lv, nil
}

// CommitEntity records in the KMS's version registry that generation gen
// of entity (wire.EntityKey) of ns was stored, and returns its entry.
// RetireAction and LatestVersion take entity keys too.
func (c *Client) CommitEntity(ctx context.Context, ns, entity string, gen int64) (*wire.LatestVersion, error) {
	var lv wire.LatestVersion
	if err := c.call(ctx, wire.OpCommitEntity, &wire.CommitEntity{Namespace: ns, Entity: entity, Generation: gen}, &lv); err != nil {
		return nil, err
	}
	return &lv, nil
}

// LatestVersion returns an action's entry of the KMS's version registry.
func (c *Client) LatestVersion(ctx context.Context, ns, action string) (*wire.LatestVersion, error) {
	var lv wire.LatestVersion
	if err := c.call(ctx, wire.OpLatestVersion, &wire.LatestRequest{Namespace: ns, Action: action}, &lv); err != nil {
		return nil, err
	}
	return &lv, nil
}

// VerifyRecord checks a signed function record against the attested KMS
// identity and decodes it.
func (c *Client) VerifyRecord(sr wire.SignedRecord) (*wire.FunctionRecord, error) {
	pub := c.SignKey()
	if pub == nil {
		return nil, ErrNotConnected
	}
	return VerifyRecord(pub, sr)
}

// VerifyRecord checks sr's signature under the KMS identity key pub and
// decodes the record. Errors wrap ErrBadRecord.
func VerifyRecord(pub ed25519.PublicKey, sr wire.SignedRecord) (*wire.FunctionRecord, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: invalid KMS identity key", ErrBadRecord)
	}
	// envelope.Protected is a constant, true except in the benchmark-only
	// unprotected build (docs/performance.md), which skips the signature.
	if len(sr.Sig) != ed25519.SignatureSize || (envelope.Protected && !ed25519.Verify(pub, wire.SignedRecordMessage(sr.Record), sr.Sig)) {
		return nil, fmt.Errorf("%w: signature does not verify under the KMS identity", ErrBadRecord)
	}
	var rec wire.FunctionRecord
	if err := bus.Unmarshal(sr.Record, &rec); err != nil {
		return nil, fmt.Errorf("%w: malformed record", ErrBadRecord)
	}
	switch {
	case len(rec.FunctionID) != 16:
		return nil, fmt.Errorf("%w: function id is not 16 bytes", ErrBadRecord)
	case len(rec.CodeDigest) != 32:
		return nil, fmt.Errorf("%w: code digest is not 32 bytes", ErrBadRecord)
	case !envelope.Suite(rec.Suite).Valid():
		return nil, fmt.Errorf("%w: unknown suite %d", ErrBadRecord, rec.Suite)
	}
	kem, _ := envelope.Suite(rec.Suite).KEM()
	if _, err := kem.NewPublicKey(rec.PublicKey); err != nil {
		return nil, fmt.Errorf("%w: public key does not fit suite %v", ErrBadRecord, envelope.Suite(rec.Suite))
	}
	return &rec, nil
}

// call makes one gateway call: nonce, ephemeral reply key, evidence binding
// (nonce, reply key, op, body); then it opens and verifies the reply and
// decodes its body into resp. A nonce refused by the KMS (e.g. issued by a
// replica that restarted meanwhile) is retried once with a fresh one.
func (c *Client) call(ctx context.Context, op string, req, resp any) error {
	pub := c.SignKey()
	if pub == nil {
		return ErrNotConnected
	}
	if c.cfg.Attester == nil {
		return errors.New("kmsclient: no attester configured")
	}
	body, err := bus.Marshal(req)
	if err != nil {
		return fmt.Errorf("kmsclient: encode %s: %w", op, err)
	}
	for attempt := 0; ; attempt++ {
		err := c.callOnce(ctx, pub, op, body, resp)
		var we *wire.Error
		if attempt == 0 && errors.As(err, &we) && we.Code == wire.CodeInvalidNonce {
			c.log.Debug("KMS refused the nonce; retrying with a fresh one", "op", op, "err", err)
			continue
		}
		return err
	}
}

func (c *Client) callOnce(ctx context.Context, pub ed25519.PublicKey, op string, body []byte, resp any) error {
	var n wire.Nonce
	if err := bus.Call(ctx, c.cfg.Conn, wire.SubjectKMSNonce, struct{}{}, &n); err != nil {
		return err
	}
	if len(n.Nonce) == 0 || len(n.Nonce) > 64 || !wire.ValidReplica(n.Replica) {
		return fmt.Errorf("%w: malformed nonce", ErrBadReply)
	}
	eph, err := x25519.GenerateKey()
	if err != nil {
		return fmt.Errorf("kmsclient: reply key: %w", err)
	}
	replyKey := eph.PublicKey().Bytes()
	ev, err := c.cfg.Attester.Attest(wire.GatewayCallReportData(n.Nonce, replyKey, op, body))
	if err != nil {
		return fmt.Errorf("kmsclient: attest: %w", err)
	}
	var reply wire.GatewayReply
	err = bus.Call(ctx, c.cfg.Conn, wire.SubjectKMSGatewayAt(n.Replica), &wire.GatewayCall{
		Nonce: n.Nonce, ReplyKey: replyKey, Evidence: ev, Op: op, Body: body,
	}, &reply)
	if err != nil {
		return err
	}
	replyBody, err := openReply(eph, pub, n.Nonce, replyKey, reply.Sealed)
	if err != nil {
		return err
	}
	defer clear(replyBody)
	if err := bus.Unmarshal(replyBody, resp); err != nil {
		return fmt.Errorf("%w: malformed %s reply", ErrBadReply, op)
	}
	return nil
}

// openReply opens a sealed gateway reply with the call's ephemeral key and
// checks the KMS signature over (nonce, reply key, body). It returns the
// body. Errors wrap ErrBadReply.
func openReply(eph hpke.PrivateKey, pub ed25519.PublicKey, nonce, replyKey, sealed []byte) ([]byte, error) {
	if len(sealed) > MaxSealedReply {
		return nil, fmt.Errorf("%w: too large", ErrBadReply)
	}
	plain, err := hpke.Open(eph, hpke.HKDFSHA256(), hpke.AES256GCM(), wire.GatewayReplyInfo(nonce), sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: does not open with this call's key", ErrBadReply)
	}
	defer clear(plain)
	var sr wire.SignedReply
	if err := bus.Unmarshal(plain, &sr); err != nil {
		return nil, fmt.Errorf("%w: malformed", ErrBadReply)
	}
	if len(sr.Sig) != ed25519.SignatureSize || !ed25519.Verify(pub, wire.GatewayReplySigned(nonce, replyKey, sr.Body), sr.Sig) {
		clear(sr.Body)
		return nil, fmt.Errorf("%w: not signed by the attested KMS for this call", ErrBadReply)
	}
	return sr.Body, nil
}
