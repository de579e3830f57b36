package gateway

import (
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/envelope"
)

// BenchmarkInvokeSeal3Steps measures the gateway's sealing work for a
// 3-step sequence as invoke does it once the chain is resolved: parse the
// three function keys from their records, build the header, seal, encode.
// "fresh" seals with a new session per function per request (the cost of
// envelope format 1: one HPKE encapsulation per step); "sessions" with the
// gateway's session cache (format 2: AEAD only, once the sessions exist).
func BenchmarkInvokeSeal3Steps(b *testing.B) {
	for _, suite := range []envelope.Suite{envelope.SuiteX25519, envelope.SuiteMLKEM768X25519} {
		kem, err := suite.KEM()
		if err != nil {
			b.Fatal(err)
		}
		var (
			pubBytes [][]byte
			chain    []envelope.Step
		)
		for j := range 3 {
			priv, err := kem.GenerateKey()
			if err != nil {
				b.Fatal(err)
			}
			pubBytes = append(pubBytes, priv.PublicKey().Bytes())
			fid := make([]byte, envelope.FunctionIDSize)
			rand.Read(fid)
			cd := sha256.Sum256(fid)
			chain = append(chain, envelope.Step{Name: fmt.Sprintf("/guest/f%d", j), FunctionID: fid, CodeDigest: cd[:], KeyVersion: 1, Runtime: testRuntime})
		}
		g := &Gateway{secret: envelope.NewKey(), sessions: envelope.NewSessions(envelope.SessionConfig{})}
		params := []byte(`{"name":"clemmys","payload":"` + fmt.Sprintf("%0900d", 0) + `"}`)
		seal := func(b *testing.B, s *envelope.Sessions) {
			pubs := make([]hpke.PublicKey, len(pubBytes))
			for j, pb := range pubBytes {
				if pubs[j], err = kem.NewPublicKey(pb); err != nil {
					b.Fatal(err)
				}
			}
			now := time.Now()
			reqID := g.newRequestID(now, "guest")
			h := envelope.Header{
				Version: envelope.Version, Suite: suite, RequestID: reqID, Namespace: "guest", Chain: chain,
				Expiry: now.Add(5 * time.Minute).UnixMilli(), Limits: envelope.Limits{TimeoutMs: 60000, MemoryMB: 256, LogsKB: 10 << 10},
			}
			env, err := s.Seal(h, envelope.RequestSecret(g.secret, reqID), envelope.AuthKey(g.secret, "guest"), pubs, params)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := env.Marshal(); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(suite.String()+"/fresh", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				seal(b, nil) // a nil *Sessions seals like envelope.Seal
			}
		})
		b.Run(suite.String()+"/sessions", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				seal(b, g.sessions)
			}
		})
	}
}
