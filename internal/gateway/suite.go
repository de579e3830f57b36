package gateway

import (
	"fmt"

	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/wire"
)

// The cipher suite of an action's function keys (docs/functions.md,
// protocol.md §2.1): chosen at deploy with the annotation "suite"
// ("x25519", the default, or "xwing": ML-KEM-768 + X25519, post-quantum
// hybrid). The KMS makes the function's key pair of that suite and signs
// it in the function record, which is what the gateway seals to: the
// annotation only asks. Every step of a sequence must use one suite.

const annSuite = "suite"

// suiteNames are the annotation's values.
var suiteNames = map[string]envelope.Suite{
	"x25519": envelope.SuiteX25519,
	"xwing":  envelope.SuiteMLKEM768X25519,
}

// suiteName is the annotation value of a suite.
func suiteName(s envelope.Suite) string {
	for n, v := range suiteNames {
		if v == s {
			return n
		}
	}
	return fmt.Sprint(uint16(s))
}

// requestedSuite returns the suite the annotations ask for and whether
// they name one (the default without), or an error message for the
// client.
func requestedSuite(anns []wire.KeyValue) (envelope.Suite, bool, string) {
	for _, kv := range anns {
		if kv.Key != annSuite {
			continue
		}
		name, _ := kv.Value.(string)
		s, ok := suiteNames[name]
		if !ok {
			return 0, true, `The annotation "suite" must be "x25519" or "xwing".`
		}
		return s, true, ""
	}
	return envelope.SuiteX25519, false, ""
}

// actionSuite is the suite of an action put: the one its annotations
// name, else the previous version's (an update does not change the suite
// unless asked), else the default. The "suite" annotation is set to it.
func actionSuite(a *wire.Action, prev *wire.Action) (envelope.Suite, bool, string) {
	suite, explicit, msg := requestedSuite(a.Annotations)
	if msg != "" {
		return 0, false, msg
	}
	if !explicit && prev != nil {
		if s, ok, bad := requestedSuite(prev.Annotations); ok && bad == "" {
			suite = s
		}
	}
	found := false
	for i, kv := range a.Annotations {
		if kv.Key == annSuite {
			a.Annotations[i].Value, found = suiteName(suite), true
		}
	}
	if !found && suite != envelope.SuiteX25519 {
		a.Annotations = append(a.Annotations, wire.KeyValue{Key: annSuite, Value: suiteName(suite)})
	}
	return suite, explicit, ""
}
