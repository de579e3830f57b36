package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"net/http"

	"github.com/clemmys/clemmys/internal/wire"
)

// Entities live in the untrusted controller's store. The gateway protects
// what it relies on there:
//
//   - function records are signed by the KMS (checked in resolveChain);
//   - a sequence's components carry the gateway's MAC (DefinitionTag), so
//     the controller cannot reorder, drop, add or swap components; rules
//     (ruleTag: trigger, action, status) and packages (packageTag: publish,
//     binding) carry MACs too, and web annotations and "final" (webtag.go);
//   - freshness: the controller could serve an older entity (a previous
//     function version, rule, package or definition, or a deleted one).
//     Function versions are ordered by their records' creation times and
//     everything else by generations (entityversions.go), both checked
//     against the KMS's version registry (freshness.go).

const seqKeyInfo = "clemmys/v1 gateway sequence key"

// definitionTag is HMAC-SHA256(seqKey, context || lp(ns) || lp(name) ||
// lp(component)...), context "clemmys/v1 sequence definition\x00" for
// generation 0 (stored before generations), else "clemmys/v2 sequence
// definition\x00" || lp(generation).
func (g *Gateway) definitionTag(ns, name string, gen int64, components []string) []byte {
	parts := make([][]byte, 0, 2+len(components))
	label := "clemmys/v1 sequence definition\x00"
	if gen != 0 {
		label = "clemmys/v2 sequence definition\x00"
		parts = append(parts, genBytes(gen))
	}
	for _, p := range append([]string{ns, name}, components...) {
		parts = append(parts, []byte(p))
	}
	return g.tagMAC(label, parts...)
}

// packageTag is HMAC-SHA256(seqKey, context || lp(ns) || lp(name) ||
// publish || lp(binding namespace) || lp(binding name)), context
// "clemmys/v1 package\x00" for generation 0 (stored before generations),
// else "clemmys/v2 package\x00" followed by the same fields and
// lp(generation).
func (g *Gateway) packageTag(p *wire.Package) []byte {
	m := g.seqMAC.get()
	if p.Generation == 0 {
		m.Write([]byte("clemmys/v1 package\x00"))
	} else {
		m.Write([]byte("clemmys/v2 package\x00"))
	}
	var bns, bname string
	if p.Binding != nil {
		bns, bname = p.Binding.Namespace, p.Binding.Name
	}
	pub := []byte{0}
	if p.Publish {
		pub[0] = 1
	}
	for i, part := range [][]byte{[]byte(p.Namespace), []byte(p.Name), pub, []byte(bns), []byte(bname)} {
		if i != 2 {
			var l [4]byte
			binary.BigEndian.PutUint32(l[:], uint32(len(part)))
			m.Write(l[:])
		}
		m.Write(part)
	}
	if p.Generation != 0 {
		g := genBytes(p.Generation)
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(g)))
		m.Write(l[:])
		m.Write(g)
	}
	return g.seqMAC.sum(m)
}

// packageAuthentic checks a stored package's MAC and that it is its newest
// generation, not deleted (entityversions.go).
func (g *Gateway) packageAuthentic(ctx context.Context, p *wire.Package) *chainError {
	if !g.packageIntact(p) {
		return &chainError{http.StatusBadGateway, msgPackageTampered, nil}
	}
	return g.admitEntity(ctx, wire.EntityPackage, p.Namespace, p.Name, p.Generation)
}

// packageIntact reports whether a stored package's publish flag and binding
// are those the gateway stored.
func (g *Gateway) packageIntact(p *wire.Package) bool {
	return hmac.Equal(p.Tag, g.packageTag(p))
}

// ruleTag is HMAC-SHA256(seqKey, "clemmys/v2 rule\x00" || lp(ns) ||
// lp(name) || lp(trigger) || lp(action) || lp(status) || lp(generation)).
// A rule of generation 0 (stored before generations) carries the first
// format, HMAC(seqKey, "clemmys/v1 rule\x00" || lp(ns) || lp(name) ||
// lp(trigger) || lp(action)), which does not cover its status.
func (g *Gateway) ruleTag(rl *wire.Rule) []byte {
	if rl.Generation == 0 {
		return g.tagMAC("clemmys/v1 rule\x00", []byte(rl.Namespace), []byte(rl.Name), []byte(rl.Trigger), []byte(rl.Action))
	}
	return g.tagMAC("clemmys/v2 rule\x00", []byte(rl.Namespace), []byte(rl.Name), []byte(rl.Trigger), []byte(rl.Action),
		[]byte(rl.Status), genBytes(rl.Generation))
}

// ruleIntact reports whether a stored rule connects what the gateway
// stored, with the status it stored.
func (g *Gateway) ruleIntact(rl *wire.Rule) bool {
	return len(rl.Tag) > 0 && hmac.Equal(rl.Tag, g.ruleTag(rl))
}

// ruleAuthentic checks a stored rule's MAC and that it is the newest
// version stored and not deleted (entityversions.go).
func (g *Gateway) ruleAuthentic(ctx context.Context, rl *wire.Rule) *chainError {
	if !g.ruleIntact(rl) {
		return &chainError{http.StatusBadGateway, msgRuleTampered, nil}
	}
	return g.admitEntity(ctx, wire.EntityRule, rl.Namespace, rl.Name, rl.Generation)
}

const msgRuleTampered = "The rule's definition could not be authenticated."

// checkDefinition verifies a stored sequence's tag.
func (g *Gateway) checkDefinition(a *wire.Action) bool {
	return hmac.Equal(a.DefinitionTag, g.definitionTag(a.Namespace, a.Name, a.Generation, a.Components))
}

// maxVerifiedRecords bounds the cache of verified function records.
const maxVerifiedRecords = 4096

// recordCache remembers function records whose KMS signature verified, by
// the hash of their signed bytes: records are immutable, so an ed25519
// verification per invocation (a sixth of the gateway's CPU on a warm
// invoke) is paid once per function version.
type recordCache = boundedMap[[32]byte, *wire.FunctionRecord]

// verifyRecord is KMS.VerifyRecord with a cache. The returned record is
// shared: do not modify it.
func (g *Gateway) verifyRecord(sr wire.SignedRecord) (*wire.FunctionRecord, error) {
	h := sha256.New()
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(sr.Record)))
	h.Write(l[:])
	h.Write(sr.Record)
	h.Write(sr.Sig)
	var k [32]byte
	h.Sum(k[:0])
	if rec, ok := g.records.get(k); ok {
		return rec, nil
	}
	rec, err := g.cfg.KMS.VerifyRecord(sr)
	if err != nil {
		return nil, err
	}
	g.records.put(k, rec, maxVerifiedRecords)
	return rec, nil
}
