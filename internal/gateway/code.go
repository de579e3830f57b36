package gateway

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/envelope"
	"github.com/clemmys/clemmys/internal/fncode"
	"github.com/clemmys/clemmys/internal/store"
	"github.com/clemmys/clemmys/internal/wire"
)

// An action's code, for its owner (GET .../actions/{name}, unless
// ?code=false), as OpenWhisk returns it in exec.code: the JavaScript
// source, or the base64 of a zip archive or of a wasm module (binary:
// true). The code is stored sealed under the function version's code key,
// which only the KMS and attested runtimes hold; the gateway asks the KMS
// for it (wire.OpCodeKey, which the KMS answers only for a function of the
// namespace the gateway names: the authenticated caller's), reads the
// sealed code from the object store, opens it (envelope.OpenCode checks it
// against the code digest of the KMS-signed function record) and forgets
// the key and the plaintext once the answer is written. Nothing of it is
// logged or cached. Another namespace reading a public package's action
// never gets its code.

// codeKeyer is the KMS call that releases a code key to the gateway
// (kmsclient.Client implements it).
type codeKeyer interface {
	CodeKey(ctx context.Context, ns string, functionID []byte) (envelope.Key, error)
}

// maxSealedCodeBytes bounds a sealed code object read from the store: the
// largest function code, its fncode header and the AEAD's overhead.
const maxSealedCodeBytes = MaxCodeBytes + 64<<10

// errNoCode: the action's code cannot be returned (no KMS call for it, a
// sequence, or a record that does not verify).
var errNoCode = errors.New("gateway: the action's code is not available")

// codeObjects opens the object store of sealed code on first use (the
// controller creates it).
type codeObjects struct {
	mu   sync.Mutex
	objs jetstream.ObjectStore
}

func (g *Gateway) codeStore(ctx context.Context) (jetstream.ObjectStore, error) {
	c := &g.code
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.objs != nil {
		return c.objs, nil
	}
	objs, err := store.OpenObjects(ctx, g.cfg.JS, store.ObjectsCode)
	if err != nil {
		return nil, err
	}
	c.objs = objs
	return objs, nil
}

// execCode returns the exec fields that show the code of action a (of the
// caller's namespace): "code", "binary" and, for JavaScript, "main".
func (g *Gateway) execCode(ctx context.Context, a *wire.Action) (map[string]any, error) {
	ck, ok := g.cfg.KMS.(codeKeyer)
	if !ok || a.Kind == kindSequence {
		return nil, errNoCode
	}
	rec, err := g.verifyRecord(a.Function)
	if err != nil || rec.Namespace != a.Namespace || rec.Action != a.Name {
		return nil, fmt.Errorf("%w: the function record does not verify", errNoCode)
	}
	sealed, err := g.readSealedCode(ctx, hex.EncodeToString(rec.FunctionID))
	if err != nil {
		return nil, err
	}
	key, err := ck.CodeKey(ctx, a.Namespace, rec.FunctionID)
	if err != nil {
		return nil, err
	}
	plain, err := envelope.OpenCode(key, rec.FunctionID, rec.CodeDigest, sealed)
	if err != nil {
		return nil, err
	}
	defer clear(plain) // what is answered is a copy
	if fncode.IsJS(plain) {
		js, err := fncode.ParseJS(plain)
		if err != nil {
			return nil, err
		}
		out := map[string]any{"code": string(js.Code), "binary": false}
		if isZip(js.Code) {
			out["code"], out["binary"] = base64.StdEncoding.EncodeToString(js.Code), true
		}
		if js.Main != "" {
			out["main"] = js.Main
		}
		return out, nil
	}
	return map[string]any{"code": base64.StdEncoding.EncodeToString(plain), "binary": true}, nil
}

func isZip(b []byte) bool { return len(b) >= 4 && string(b[:4]) == "PK\x03\x04" }

// readSealedCode reads code object name, at most maxSealedCodeBytes.
func (g *Gateway) readSealedCode(ctx context.Context, name string) ([]byte, error) {
	objs, err := g.codeStore(ctx)
	if err != nil {
		return nil, err
	}
	res, err := objs.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer res.Close()
	info, err := res.Info()
	if err != nil {
		return nil, err
	}
	if info.Size > maxSealedCodeBytes {
		return nil, fmt.Errorf("gateway: code object of %d bytes", info.Size)
	}
	b, err := io.ReadAll(io.LimitReader(res, maxSealedCodeBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSealedCodeBytes {
		return nil, fmt.Errorf("gateway: code object over %d bytes", maxSealedCodeBytes)
	}
	return b, nil
}
