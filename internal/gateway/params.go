package gateway

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/wire"
)

// Default parameters of actions, packages and triggers are confidential:
// the gateway seals them before the entity leaves it, with AES-256-GCM under
// a key derived from the gateway secret, the associated data binding the
// entity (kind, namespace, name), so the controller can neither read them
// nor move them to another entity. Only gateways open them: the gateway
// merges them into the request's parameters before sealing the invocation
// envelope (it sees the request's parameters anyway), which lets it enforce
// "final" parameters. (DESIGN had the runtime merge them; merging in the
// gateway gives the same confidentiality with a simpler runtime.)

// Default parameters are merged here, in the gateway, before the envelope
// is sealed (mergeParams): package (the bound package's, then the
// binding's), then the action's, then the request's, later ones winning —
// except that a request may not redefine a parameter the action declares
// final. For a sequence, the defaults of the sequence (and its package) go
// into the input of its first step. The components' own defaults are not
// applied: the gateway seals only step 0's input, and the output of step j
// goes to step j+1 inside the enclaves, where nothing merges (a deviation
// from OpenWhisk, which merges each component's defaults when it runs).

const paramsKeyInfo = "clemmys/v1 gateway parameters key"

// Entity kinds in the associated data of sealed parameters.
const (
	paramsAction  = "action"
	paramsPackage = "package"
	paramsTrigger = "trigger"
)

// maxParamsBytes bounds the JSON of an entity's default parameters.
const maxParamsBytes = 1 << 20

var errParams = errors.New("gateway: sealed parameters do not open")

func (g *Gateway) paramsAEAD() (cipher.AEAD, error) {
	d := g.derived()
	return d.paramsAEAD, d.err
}

// derivedKeys are keys the gateway derives from its secret once, not per
// request.
type derivedKeys struct {
	once         sync.Once
	requestIDMAC *keyedMAC   // MACs of request ids (seal.go)
	paramsAEAD   cipher.AEAD // seals default parameters
	err          error

	authKeys boundedMap[string, envelope.Key] // envelope auth key by namespace
}

// maxCachedAuthKeys bounds the namespace auth keys kept; when full the
// cache starts over.
const maxCachedAuthKeys = 4096

// namespaceAuthKey is envelope.AuthKey(secret, ns), derived once per
// namespace.
func (g *Gateway) namespaceAuthKey(ns string) envelope.Key {
	if k, ok := g.keys.authKeys.get(ns); ok {
		return k
	}
	k := envelope.AuthKey(g.secret, ns)
	g.keys.authKeys.put(ns, k, maxCachedAuthKeys)
	return k
}

// derived returns the keys derived from the gateway secret, deriving them
// on first use.
func (g *Gateway) derived() *derivedKeys {
	d := &g.keys
	d.once.Do(func() {
		var err error
		ridKey, err := hkdf.Key(sha256.New, g.secret.Bytes(), nil, requestIDKeyInfo, 32)
		if err != nil {
			panic(err) // a 32-byte key of HKDF-SHA256 cannot fail
		}
		d.requestIDMAC = newKeyedMAC(ridKey)
		key, err := hkdf.Key(sha256.New, g.secret.Bytes(), nil, paramsKeyInfo, 32)
		if err != nil {
			d.err = err
			return
		}
		defer clear(key)
		block, err := aes.NewCipher(key)
		if err != nil {
			d.err = err
			return
		}
		d.paramsAEAD, d.err = cipher.NewGCM(block)
	})
	return d
}

func paramsAAD(kind, ns, name string) []byte {
	var b []byte
	for _, p := range []string{"clemmys/v1 parameters", kind, ns, name} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

// sealParams seals default parameters for the entity kind/ns/name. No
// parameters seal to nil.
func (g *Gateway) sealParams(kind, ns, name string, params []wire.KeyValue) (wire.SealedParams, error) {
	if len(params) == 0 {
		return nil, nil
	}
	pt, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("gateway: encode parameters: %w", err)
	}
	defer clear(pt)
	if len(pt) > maxParamsBytes {
		return nil, fmt.Errorf("gateway: parameters are %d bytes, limit %d", len(pt), maxParamsBytes)
	}
	aead, err := g.paramsAEAD()
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(pt)+aead.Overhead())
	_, _ = rand.Read(nonce)
	return aead.Seal(nonce, nonce, pt, paramsAAD(kind, ns, name)), nil
}

// openParams opens parameters sealed by sealParams for the same entity.
func (g *Gateway) openParams(kind, ns, name string, sealed wire.SealedParams) ([]wire.KeyValue, error) {
	if len(sealed) == 0 {
		return nil, nil
	}
	aead, err := g.paramsAEAD()
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, errParams
	}
	pt, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], paramsAAD(kind, ns, name))
	if err != nil {
		return nil, errParams
	}
	defer clear(pt)
	var kvs []wire.KeyValue
	if err := json.Unmarshal(pt, &kvs); err != nil {
		return nil, errParams
	}
	return kvs, nil
}

// mergeKV returns base with over's entries replacing or added (by key).
func mergeKV(base, over []wire.KeyValue) []wire.KeyValue {
	out := append([]wire.KeyValue(nil), base...)
	for _, kv := range over {
		replaced := false
		for i := range out {
			if out[i].Key == kv.Key {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out
}

// finalParams returns the parameters of an action a request may not
// redefine: all its defaults (inherited ones included) with the annotation
// {"key": "final", "value": true}, or the names listed by {"key": "final",
// "value": ["p1", …]}.
func finalParams(anns []wire.KeyValue, defaults []wire.KeyValue) map[string]bool {
	out := map[string]bool{}
	for _, kv := range anns {
		if kv.Key != "final" {
			continue
		}
		switch v := kv.Value.(type) {
		case bool:
			if v {
				for _, d := range defaults {
					out[d.Key] = true
				}
			}
		case []any:
			for _, e := range v {
				if s, ok := e.(string); ok {
					out[s] = true
				}
			}
		}
	}
	return out
}

// mergeParams returns the input of an invocation of t: the JSON object of
// the inherited defaults, the action's own (sealed in the entity) and the
// request's payload (a JSON object), later ones winning. A payload that
// redefines a final parameter is refused.
func (g *Gateway) mergeParams(t *target, payload []byte) ([]byte, *chainError) {
	a := t.action
	// "final" decides which defaults a request may override: honour the
	// annotations only if their MAC (webtag.go) verifies, so the
	// controller can neither drop nor add it.
	if !t.trigger && !g.webIntact(a) {
		return nil, &chainError{http.StatusBadGateway, msgAnnotationsTampered, nil}
	}
	own, err := g.openParams(paramsAction, a.Namespace, a.Name, a.Parameters)
	if err != nil {
		return nil, &chainError{http.StatusBadGateway, msgBadParams, err}
	}
	defaults := mergeKV(t.inherited, own)
	var req map[string]json.RawMessage
	if err := json.Unmarshal(payload, &req); err != nil || req == nil {
		return nil, &chainError{http.StatusBadRequest, "The request content was malformed: the parameters must be a JSON object.", nil}
	}
	if final := finalParams(a.Annotations, defaults); len(final) > 0 {
		for k := range req {
			if final[k] {
				return nil, &chainError{http.StatusBadRequest, msgFinalParams, nil}
			}
		}
	}
	if len(defaults) == 0 {
		return payload, nil
	}
	merged := make(map[string]json.RawMessage, len(defaults)+len(req))
	for _, kv := range defaults {
		b, err := json.Marshal(jsonValue(kv.Value))
		if err != nil {
			return nil, &chainError{http.StatusInternalServerError, msgInternal, err}
		}
		merged[kv.Key] = b
	}
	for k, v := range req {
		merged[k] = v
	}
	out, err := json.Marshal(merged)
	if err != nil {
		return nil, &chainError{http.StatusInternalServerError, msgInternal, err}
	}
	return out, nil
}
