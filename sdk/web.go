package sdk

import (
	"encoding/base64"
	"errors"
	"mime"
	"strings"
)

// Web actions. An action deployed with the annotation web-export: true
// answers HTTP at /api/v1/web/{namespace}/{package or default}/{action},
// without credentials (OpenWhisk's web actions). Its parameters then carry
// the request: ParseWebRequest reads them. With the .http extension (the
// default) its result is the response: build it with WebResponse.Result.
//
//	func main() { sdk.Run(page) }
//
//	func page(params map[string]any) (map[string]any, error) {
//		req := sdk.ParseWebRequest(params)
//		name := req.Params["name"]
//		return sdk.WebResponse{
//			Headers: map[string]string{"Content-Type": "text/html"},
//			Body:    fmt.Sprintf("<p>Hello %v (%s)</p>", name, req.Method),
//		}.Result(), nil
//	}

// WebRequest is the HTTP request a web action was invoked with.
type WebRequest struct {
	Method  string            // lower case: "get", "post", …
	Headers map[string]string // names in lower case
	Path    string            // the path after the action's name ("" or "/…")
	User    string            // the caller's namespace under require-whisk-auth: true
	// Query is the raw query string and Body the raw body (base64 for a
	// binary content type) of a raw-http action; otherwise the query and
	// a JSON or form body are merged into Params, and any other body is
	// in Body.
	Query string
	Body  string
	// Params are the other parameters: the action's defaults, the query
	// parameters and the body's fields (for an action that is not
	// raw-http).
	Params map[string]any
}

// ParseWebRequest reads the __ow_* parameters of a web action's
// invocation.
func ParseWebRequest(params map[string]any) *WebRequest {
	r := &WebRequest{Headers: map[string]string{}, Params: map[string]any{}}
	for k, v := range params {
		switch k {
		case "__ow_method":
			r.Method, _ = v.(string)
		case "__ow_headers":
			if m, ok := v.(map[string]any); ok {
				for hk, hv := range m {
					if s, ok := hv.(string); ok {
						r.Headers[hk] = s
					}
				}
			}
		case "__ow_path":
			r.Path, _ = v.(string)
		case "__ow_user":
			r.User, _ = v.(string)
		case "__ow_query":
			r.Query, _ = v.(string)
		case "__ow_body":
			if s, ok := v.(string); ok {
				r.Body = s
			}
		default:
			r.Params[k] = v
		}
	}
	return r
}

// BodyBytes returns the body: decoded from base64 unless its content type
// is text (as the platform passes a binary body).
func (r *WebRequest) BodyBytes() ([]byte, error) {
	mt, _, _ := mime.ParseMediaType(r.Headers["content-type"])
	if isText(mt) {
		return []byte(r.Body), nil
	}
	b, err := base64.StdEncoding.DecodeString(r.Body)
	if err != nil {
		return nil, errors.New("sdk: the request body is not base64")
	}
	return b, nil
}

func isText(mt string) bool {
	return strings.HasPrefix(mt, "text/") || mt == "application/json" || strings.HasSuffix(mt, "+json") ||
		strings.HasSuffix(mt, "+xml") || mt == "application/xml" || mt == "application/javascript" ||
		mt == "application/x-www-form-urlencoded" || mt == "application/graphql"
}

// WebResponse is a web action's HTTP response (.http extension).
type WebResponse struct {
	StatusCode int               // 0: 200, or 204 without a body
	Headers    map[string]string // e.g. Content-Type
	// Body is a string (text, or base64 for a binary Content-Type: see
	// BinaryBody), or a JSON object or array (Content-Type defaults to
	// application/json).
	Body any
}

// Result is the response as an action result.
func (w WebResponse) Result() map[string]any {
	out := map[string]any{}
	if w.StatusCode != 0 {
		out["statusCode"] = w.StatusCode
	}
	if len(w.Headers) > 0 {
		h := make(map[string]any, len(w.Headers))
		for k, v := range w.Headers {
			h[k] = v
		}
		out["headers"] = h
	}
	if w.Body != nil {
		out["body"] = w.Body
	}
	return out
}

// BinaryBody encodes binary content (an image, say) as a WebResponse body:
// base64, which the platform decodes because the Content-Type is not text.
func BinaryBody(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
