package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/wire"
)

func nested(depth int) string {
	return strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth)
}

func kvsOf(t testing.TB, js string) *[]wire.KeyValue {
	t.Helper()
	var kvs []wire.KeyValue
	if err := json.Unmarshal([]byte(js), &kvs); err != nil {
		t.Fatal(err)
	}
	return &kvs
}

func TestCheckKVs(t *testing.T) {
	tests := []struct {
		name, kvs, what, msg string
	}{
		{"scalars", `[{"key":"a","value":1},{"key":"b","value":"x"},{"key":"c","value":null}]`, "annotations", ""},
		{"16 levels", `[{"key":"a","value":` + nested(maxValueDepth) + `}]`, "annotations", ""},
		{"17 levels", `[{"key":"a","value":` + nested(maxValueDepth+1) + `}]`, "annotations", "nested too deeply"},
		{"28 levels", `[{"key":"deep","value":` + nested(28) + `}]`, "annotations", `annotation "deep" is nested too deeply: at most 16`},
		{"deep array", `[{"key":"a","value":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}]`, "parameters", `parameter "a" is nested too deeply`},
		{"empty key", `[{"key":"","value":1}]`, "annotations", "key of 1 to 256"},
		{"long key", `[{"key":"` + strings.Repeat("k", 257) + `","value":1}]`, "parameters", "key of 1 to 256"},
		{"too large", `[{"key":"a","value":"` + strings.Repeat("x", maxAnnotationsBytes) + `"}]`, "annotations", "too large"},
		{"large parameter", `[{"key":"a","value":"` + strings.Repeat("x", maxAnnotationsBytes) + `"}]`, "parameters", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := checkKVs(kvsOf(t, tt.kvs), tt.what)
			if (tt.msg == "") != (msg == "") || !strings.Contains(msg, tt.msg) {
				t.Errorf("checkKVs = %q, want %q", msg, tt.msg)
			}
		})
	}
	many := make([]wire.KeyValue, maxKVs+1)
	for i := range many {
		many[i] = wire.KeyValue{Key: "k", Value: i}
	}
	if msg := checkKVs(&many, "annotations"); !strings.Contains(msg, "Too many annotations") {
		t.Errorf("%d annotations: %q", len(many), msg)
	}
	if msg := checkKVs(&many, "parameters"); msg != "" {
		t.Errorf("%d parameters: %q", len(many), msg)
	}
}

// FuzzCheckKVs: whatever checkKVs accepts as annotations can be read back
// in a page of a listing through the bus, with the limits the gateway
// decodes the controller's replies with (the bug: a value nested 28 levels
// deep was accepted and then broke every listing that included it).
//
//	go test -run '^$' -fuzz FuzzCheckKVs -fuzztime 30s ./internal/gateway
func FuzzCheckKVs(f *testing.F) {
	for _, seed := range []string{
		`[{"key":"a","value":1}]`,
		`[{"key":"a","value":` + nested(maxValueDepth) + `}]`,
		`[{"key":"a","value":` + nested(28) + `}]`,
		`[{"key":"a","value":[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]}]`,
		`[{"key":"web-export","value":true},{"key":"final","value":{"x":[1,2,{"y":null}]}}]`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, js string) {
		var kvs []wire.KeyValue
		if json.Unmarshal([]byte(js), &kvs) != nil {
			return
		}
		if checkKVs(&kvs, "annotations") != "" {
			return
		}
		// A listing page of the most nested shape a reader decodes.
		list := wire.PackageList{Packages: []wire.Package{{Namespace: "ns", Name: "p", Annotations: kvs}}}
		b, err := bus.Marshal(&list)
		if err != nil {
			t.Fatalf("accepted annotations do not encode: %v", err)
		}
		frame, err := bus.Marshal(map[int]any{2: b})
		if err != nil {
			t.Fatal(err)
		}
		var outer map[int][]byte
		if err := bus.Unmarshal(frame, &outer); err != nil {
			t.Fatalf("reply frame: %v", err)
		}
		var back wire.PackageList
		if err := bus.Unmarshal(outer[2], &back); err != nil {
			t.Fatalf("accepted annotations %s do not decode in a listing: %v", js, err)
		}
	})
}
