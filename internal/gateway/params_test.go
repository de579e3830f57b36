package gateway

import (
	"bytes"
	"errors"
	"testing"

	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/wire"
)

func TestSealedParams(t *testing.T) {
	g := &Gateway{secret: envelope.NewKey()}
	in := []wire.KeyValue{{Key: "apiKey", Value: "SECRET-123"}, {Key: "n", Value: float64(3)}}
	sealed, err := g.sealParams(paramsAction, "guest", "a", in)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("SECRET-123")) || bytes.Contains(sealed, []byte("apiKey")) {
		t.Fatal("parameters visible in the sealed form")
	}
	out, err := g.openParams(paramsAction, "guest", "a", sealed)
	if err != nil || len(out) != 2 || out[0].Value != "SECRET-123" || out[1].Value != float64(3) {
		t.Fatalf("%v %v", out, err)
	}
	for _, c := range []struct{ kind, ns, name string }{
		{paramsAction, "guest", "b"}, {paramsAction, "alice", "a"}, {paramsPackage, "guest", "a"},
	} {
		if _, err := g.openParams(c.kind, c.ns, c.name, sealed); !errors.Is(err, errParams) {
			t.Errorf("moved to %v: %v", c, err)
		}
	}
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	if _, err := g.openParams(paramsAction, "guest", "a", flipped); !errors.Is(err, errParams) {
		t.Errorf("tampered: %v", err)
	}
	other := &Gateway{secret: envelope.NewKey()}
	if _, err := other.openParams(paramsAction, "guest", "a", sealed); !errors.Is(err, errParams) {
		t.Errorf("another gateway secret: %v", err)
	}
	if s, err := g.sealParams(paramsAction, "guest", "a", nil); s != nil || err != nil {
		t.Errorf("no parameters: %v %v", s, err)
	}
}
