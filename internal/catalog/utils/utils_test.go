package utils

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// params decodes a JSON object as the SDK does.
func params(t *testing.T, js string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func check(t *testing.T, fn func(map[string]any) (map[string]any, error), in, want string) {
	t.Helper()
	got, err := fn(params(t, in))
	if err != nil {
		t.Fatalf("%s: %v", in, err)
	}
	// Compare through JSON, as the platform sees the result.
	gb, _ := json.Marshal(got)
	if !reflect.DeepEqual(params(t, string(gb)), params(t, want)) {
		t.Errorf("%s: got %s, want %s", in, gb, want)
	}
}

func TestEcho(t *testing.T) {
	check(t, Echo, `{"payload":"Five fuzzy felines","n":[1,{"a":null}]}`, `{"payload":"Five fuzzy felines","n":[1,{"a":null}]}`)
	check(t, Echo, `{}`, `{}`)
	if out, _ := Echo(nil); out == nil {
		t.Error("echo of nil params is nil")
	}
}

func TestCat(t *testing.T) {
	check(t, Cat, `{"lines":[4,2,3]}`, `{"lines":[4,2,3],"payload":"4\n2\n3"}`)
	check(t, Cat, `{"lines":["a",null,true,1.5,[1,2]]}`, `{"lines":["a",null,true,1.5,[1,2]],"payload":"a\n\ntrue\n1.5\n1,2"}`)
	check(t, Cat, `{}`, `{"lines":[],"payload":""}`)
	if _, err := Cat(params(t, `{"lines":"abc"}`)); err == nil {
		t.Error("cat of a string: no error")
	}
}

func TestSort(t *testing.T) {
	check(t, Sort, `{"lines":[4,2,3]}`, `{"lines":[2,3,4],"length":3}`)
	// JavaScript's default sort compares strings: 10 < 9.
	check(t, Sort, `{"lines":[9,10,1,"b","B","a"]}`, `{"lines":[1,10,9,"B","a","b"],"length":6}`)
	// UTF-16 order: U+FF5E (one unit) sorts after U+1F600 (surrogates D83D…).
	check(t, Sort, `{"lines":["～","😀"]}`, `{"lines":["😀","～"],"length":2}`)
	check(t, Sort, `{}`, `{"lines":[],"length":0}`)
}

func TestSplit(t *testing.T) {
	check(t, Split, `{"payload":"one,two,three","separator":","}`, `{"lines":["one","two","three"],"payload":"one,two,three"}`)
	check(t, Split, `{"payload":"a\r\nb\nc"}`, `{"lines":["a","b","c"],"payload":"a\r\nb\nc"}`)
	check(t, Split, `{"payload":"a b","separator":""}`, `{"lines":["a b"],"payload":"a b"}`)
	check(t, Split, `{"payload":12}`, `{"lines":["12"],"payload":12}`)
	if _, err := Split(params(t, `{}`)); err == nil {
		t.Error("split without payload: no error")
	}
}

func TestHead(t *testing.T) {
	check(t, Head, `{"lines":[4,2,3],"num":2}`, `{"lines":[4,2],"num":2}`)
	check(t, Head, `{"lines":[4,2,3]}`, `{"lines":[4],"num":1}`)
	check(t, Head, `{"lines":[4,2,3],"num":10}`, `{"lines":[4,2,3],"num":10}`)
	check(t, Head, `{"lines":[4,2,3],"num":-1}`, `{"lines":[4,2],"num":-1}`)
	check(t, Head, `{"lines":[4,2,3],"num":"2"}`, `{"lines":[4,2],"num":"2"}`)
	if _, err := Head(params(t, `{"lines":[1],"num":"x"}`)); err == nil {
		t.Error("head with num x: no error")
	}
}

func TestDate(t *testing.T) {
	defer func(f func() time.Time) { now = f }(now)
	now = func() time.Time { return time.Date(2016, 3, 22, 0, 59, 55, 961e6, time.FixedZone("x", 3600)) }
	check(t, Date, `{}`, `{"date":"2016-03-21T23:59:55.961Z"}`)
}

func TestSmash(t *testing.T) {
	check(t, Smash, `{"a":1,"$fieldName":"x"}`, `{"x":{"a":1}}`)
	check(t, Smash, `{"a":1,"b":[2],"fieldName":"y"}`, `{"y":{"a":1,"b":[2]}}`)
	if _, err := Smash(params(t, `{"a":1}`)); err == nil {
		t.Error("smash without fieldName: no error")
	}
}
