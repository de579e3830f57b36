package gateway

import (
	"bytes"
	"strings"
	"testing"

	"github.com/clemmys/clemmys/internal/wire"
)

// TestOpenActivationChecksReceipts: the record's plaintext parts must be
// what the runtime's receipt says.
func TestOpenActivationChecksReceipts(t *testing.T) {
	g, rec, digest := sealedRun(t, `{"ok":true}`, "log line\n")
	_, other, _ := sealedRun(t, `{"ok":"other"}`, "other\n")
	if v := g.openActivation(rec, digest, "guest"); v.status != wire.StatusSuccess || len(v.receipts) != 1 {
		t.Fatalf("honest: %q %s, %d receipts", v.status, v.result, len(v.receipts))
	} else if m := v.render(); m["receipts"] == nil {
		t.Fatal("the rendered record has no receipts")
	}
	for _, c := range []struct {
		name   string
		mutate func(r *wire.Activation)
		want   string
	}{
		{"relabelled as a failure", func(r *wire.Activation) { r.Status = wire.StatusDeveloperError }, "does not match its result"},
		{"no receipt", func(r *wire.Activation) { r.Receipts = nil }, msgNoReceipt},
		{"another request's receipt", func(r *wire.Activation) { r.Receipts = other.Receipts }, msgBadReceipt},
		{"a receipt twice", func(r *wire.Activation) { r.Receipts = [][]byte{r.Receipts[0], r.Receipts[0]} }, msgReceiptChain},
		{"a flipped receipt", func(r *wire.Activation) {
			b := bytes.Clone(r.Receipts[0])
			b[len(b)/2] ^= 1
			r.Receipts = [][]byte{b}
		}, msgBadReceipt},
		{"an oversize receipt", func(r *wire.Activation) { r.Receipts = [][]byte{make([]byte, wire.MaxSignedReceipt+100)} }, msgBadReceipt},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := *rec
			c.mutate(&r)
			v := g.openActivation(&r, digest, "guest")
			if v.status != wire.StatusInternalError || !strings.Contains(string(v.result), c.want) || v.receipts != nil {
				t.Fatalf("status %q result %s", v.status, v.result)
			}
		})
	}
	t.Run("one failure relabelled as another", func(t *testing.T) {
		g, rec, digest := sealedRun(t, `{"error":"no"}`, "")
		if v := g.openActivation(rec, digest, "guest"); v.status != wire.StatusApplicationError {
			t.Fatalf("honest failure: %q %s", v.status, v.result)
		}
		for _, st := range []string{wire.StatusDeveloperError, wire.StatusInternalError, wire.StatusSuccess, ""} {
			r := *rec
			r.Status = st
			v := g.openActivation(&r, digest, "guest")
			if v.status != wire.StatusInternalError || !strings.Contains(string(v.result), msgReceiptStatus) {
				t.Fatalf("%s: %q %s", st, v.status, v.result)
			}
		}
	})
	t.Run("withheld logs", func(t *testing.T) {
		r := *rec
		r.Logs = nil
		v := g.openActivation(&r, digest, "guest")
		if v.status != wire.StatusSuccess || len(v.logs) != 1 || v.logs[0] != msgWithheldLogs {
			t.Fatalf("%q %q", v.status, v.logs)
		}
	})
	t.Run("no logs, none written", func(t *testing.T) {
		g, rec, digest := sealedRun(t, `{"ok":true}`, "")
		rec.Logs = nil
		if v := g.openActivation(rec, digest, "guest"); v.status != wire.StatusSuccess || len(v.logs) != 0 {
			t.Fatalf("%q %q", v.status, v.logs)
		}
	})
}
