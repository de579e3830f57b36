package sdk

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestWebRequest(t *testing.T) {
	r := ParseWebRequest(map[string]any{
		"__ow_method": "post", "__ow_path": "/a", "__ow_user": "guest", "__ow_query": "x=1",
		"__ow_headers": map[string]any{"content-type": "image/png"}, "__ow_body": BinaryBody([]byte{1, 2}), "name": "Ann",
	})
	if r.Method != "post" || r.Path != "/a" || r.User != "guest" || r.Query != "x=1" || r.Params["name"] != "Ann" || len(r.Params) != 1 {
		t.Fatalf("%+v", r)
	}
	if b, err := r.BodyBytes(); err != nil || !bytes.Equal(b, []byte{1, 2}) {
		t.Fatalf("body %v %v", b, err)
	}
	res := WebResponse{StatusCode: 201, Headers: map[string]string{"Content-Type": "text/html"}, Body: "<p>x</p>"}.Result()
	if b, _ := json.Marshal(res); string(b) != `{"body":"\u003cp\u003ex\u003c/p\u003e","headers":{"Content-Type":"text/html"},"statusCode":201}` {
		t.Fatalf("result %s", b)
	}
}

func FuzzParseWebRequest(f *testing.F) {
	f.Add(`{"__ow_method":"get","__ow_headers":{"content-type":"text/plain"},"__ow_body":"hi"}`)
	f.Add(`{"__ow_headers":[1],"__ow_body":7}`)
	f.Fuzz(func(t *testing.T, s string) {
		var m map[string]any
		if json.Unmarshal([]byte(s), &m) != nil {
			return
		}
		r := ParseWebRequest(m)
		_, _ = r.BodyBytes()
	})
}
