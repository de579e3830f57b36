package gateway

import (
	"crypto/hmac"
	"encoding/binary"
	"encoding/json"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// Web annotations are what makes an action reachable without credentials
// (web-export), how its requests are shaped (raw-http, web-custom-options)
// and who may call it (require-whisk-auth), and which of its parameters a
// request may not redefine (final). They are stored in plaintext in the
// untrusted controller's store, so a controller that added web-export to a
// private action would expose it to anyone. The gateway therefore stores,
// with every action, a MAC over its namespace, name and these annotations
// (wire.Action.WebTag), and honours them only when the MAC verifies: an
// action whose web annotations were changed behind the gateway's back is
// not a web action (404), and is invoked as if it had none.

// webAnnotationKeys are the annotations the web tag covers, in MAC order.
var webAnnotationKeys = []string{annWebExport, annRawHTTP, annRequireAuth, annFinal, annCustomOptions}

const (
	annWebExport     = "web-export"
	annRawHTTP       = "raw-http"
	annRequireAuth   = "require-whisk-auth"
	annFinal         = "final"
	annCustomOptions = "web-custom-options"
)

// webTag is HMAC-SHA256(seqKey, context || [lp(generation), if not 0] || lp(ns) || lp(name) || for each
// web annotation key: lp(key) || lp(JSON of its value, empty if absent)).
// The values are taken as they come back from the store (a CBOR round trip
// of what the gateway stored), so the MAC of a stored entity is the MAC of
// what was put.
func (g *Gateway) webTag(ns, name string, gen int64, anns []wire.KeyValue) []byte {
	m := g.seqMAC.get()
	if gen == 0 {
		m.Write([]byte("clemmys/v1 web annotations\x00"))
	} else {
		// Since generations: the label, then lp(generation) first.
		m.Write([]byte("clemmys/v2 web annotations\x00"))
		b := genBytes(gen)
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(b)))
		m.Write(l[:])
		m.Write(b)
	}
	lp := func(b []byte) {
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(b)))
		m.Write(l[:])
		m.Write(b)
	}
	lp([]byte(ns))
	lp([]byte(name))
	for _, k := range webAnnotationKeys {
		lp([]byte(k))
		var v []byte
		for _, kv := range anns {
			if kv.Key == k {
				v, _ = json.Marshal(jsonValue(kv.Value))
			}
		}
		lp(v)
	}
	return g.seqMAC.sum(m)
}

// tagWeb sets a's web tag over its annotations, as they will read back
// from the store.
func (g *Gateway) tagWeb(a *wire.Action) {
	anns := a.Annotations
	if b, err := bus.Marshal(anns); err == nil {
		var back []wire.KeyValue
		if bus.Unmarshal(b, &back) == nil {
			anns = back
		}
	}
	a.WebTag = g.webTag(a.Namespace, a.Name, a.Generation, anns)
}

// webIntact reports whether a stored action's web annotations are those
// the gateway stored.
func (g *Gateway) webIntact(a *wire.Action) bool {
	return len(a.WebTag) > 0 && hmac.Equal(a.WebTag, g.webTag(a.Namespace, a.Name, a.Generation, a.Annotations))
}

// annotation returns the value of annotation key, or nil.
func annotation(anns []wire.KeyValue, key string) any {
	for _, kv := range anns {
		if kv.Key == key {
			return jsonValue(kv.Value)
		}
	}
	return nil
}

// annotationTrue reports whether annotation key is true (OpenWhisk also
// takes the string "true" and a non-zero number for the web annotations).
func annotationTrue(anns []wire.KeyValue, key string) bool {
	switch v := annotation(anns, key).(type) {
	case bool:
		return v
	case string:
		return v == "true" || v == "yes"
	case float64:
		return v != 0
	case uint64:
		return v != 0
	case int64:
		return v != 0
	}
	return false
}
