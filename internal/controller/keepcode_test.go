package controller

import (
	"bytes"
	"testing"

	"github.com/clemmys/clemmys/internal/wire"
)

// An update without new code (the gateway's merge of an OpenWhisk update
// whose body has no exec) keeps the stored code object and bumps the
// version; it is refused when the stored action no longer uses that code.
func TestActionPutKeepCode(t *testing.T) {
	e := newEnv(t)
	first := actionPut(t, "guest", "hello", "v1")
	e.put(first)

	keep := actionPut(t, "guest", "hello", "v1")
	keep.SealedCode = nil
	keep.KeepCode = true
	keep.Overwrite = true
	keep.Action.Annotations = []wire.KeyValue{{Key: "description", Value: "updated"}}
	a := e.put(keep)
	if a.Version != "0.0.2" || len(a.Annotations) != 1 {
		t.Fatalf("kept-code update: version %q annotations %v", a.Version, a.Annotations)
	}
	if c := e.code(fidOf("v1")); !bytes.Equal(c, first.SealedCode) {
		t.Fatalf("code after kept-code update: %q", c)
	}

	// KeepCode with code, or code-less without KeepCode: bad request.
	bad := keep
	bad.SealedCode = []byte("x")
	_, err := call[wire.Action](e, wire.SubjectActionPut, bad)
	wantCode(t, err, wire.CodeBadRequest)
	bad = keep
	bad.KeepCode = false
	_, err = call[wire.Action](e, wire.SubjectActionPut, bad)
	wantCode(t, err, wire.CodeBadRequest)

	// The code to keep is not the stored one (replaced meanwhile), or the
	// action is gone: conflict, nothing stored.
	other := actionPut(t, "guest", "hello", "v2")
	other.SealedCode = nil
	other.KeepCode = true
	other.Overwrite = true
	_, err = call[wire.Action](e, wire.SubjectActionPut, other)
	wantCode(t, err, wire.CodeConflict)
	missing := actionPut(t, "guest", "nothere", "v1")
	missing.SealedCode = nil
	missing.KeepCode = true
	missing.Overwrite = true
	_, err = call[wire.Action](e, wire.SubjectActionPut, missing)
	wantCode(t, err, wire.CodeConflict)
	if e.code(fidOf("v1")) == nil {
		t.Fatal("refused kept-code update deleted the code")
	}
}
