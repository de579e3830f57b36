package gateway

import (
	"fmt"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

// Limits on the parameters and annotations of an entity, checked when it is
// written. Every reader of an entity decodes it with fixed limits (the
// gateway decodes the controller's replies with bus.Unmarshal: 32 levels of
// nesting, which a listing spends 5 of on its own structure), so a value
// accepted here must fit the tightest reader: otherwise one entity written
// by one tenant would make every listing that includes it fail, for every
// caller (a public package's annotations are read by other namespaces).
const (
	// maxValueDepth bounds the nesting of one parameter or annotation
	// value (each JSON object or array is a level; a scalar is level 0).
	maxValueDepth = 16
	// maxAnnotationsBytes bounds an entity's encoded annotations, as the
	// controller does, so that a page of entities fits in one bus message.
	maxAnnotationsBytes = 64 << 10
)

// checkKVs validates parameters or annotations (what names them) as they
// are written; it returns a message for the client, or "".
func checkKVs(kvs *[]wire.KeyValue, what string) string {
	if kvs == nil {
		return ""
	}
	if n := maxOf(what); len(*kvs) > n {
		return fmt.Sprintf("Too many %s: at most %d.", what, n)
	}
	for _, kv := range *kvs {
		if kv.Key == "" || len(kv.Key) > maxEntityName {
			return "Every one of the " + what + " must have a key of 1 to 256 characters."
		}
		if !depthAtMost(kv.Value, maxValueDepth) {
			return fmt.Sprintf("The value of %s %q is nested too deeply: at most %d levels of objects and arrays.", singular(what), kv.Key, maxValueDepth)
		}
	}
	if what == "annotations" {
		b, err := bus.Marshal(*kvs)
		if err != nil {
			return "The annotations cannot be stored."
		}
		if len(b) > maxAnnotationsBytes {
			return fmt.Sprintf("The annotations are too large: at most %d bytes encoded.", maxAnnotationsBytes)
		}
	}
	return ""
}

func maxOf(what string) int {
	if what == "annotations" {
		return maxKVs
	}
	return maxParams
}

func singular(what string) string {
	if what == "annotations" {
		return "annotation"
	}
	return "parameter"
}

// depthAtMost reports whether v, a decoded JSON value, nests at most max
// levels of objects and arrays. It stops as soon as it is deeper.
func depthAtMost(v any, max int) bool {
	switch t := v.(type) {
	case map[string]any:
		if max == 0 {
			return false
		}
		for _, e := range t {
			if !depthAtMost(e, max-1) {
				return false
			}
		}
	case []any:
		if max == 0 {
			return false
		}
		for _, e := range t {
			if !depthAtMost(e, max-1) {
				return false
			}
		}
	}
	return true
}
