package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// jsonDetail says where and why a request body is not the JSON expected,
// as OpenWhisk's "The request content was malformed:" answers do: the
// parser's byte offset, and for a wrong type the field. It never quotes
// the body (it may hold secrets).
func jsonDetail(raw []byte, err error) string {
	if len(bytes.TrimSpace(raw)) == 0 {
		return "the body is empty"
	}
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		// The parser's offset is past the byte it refused: name that
		// byte's index, as OpenWhisk does ("at input index N (line L,
		// position P)").
		idx := max(se.Offset-1, 0)
		if se.Offset >= int64(len(raw)) && se.Error() == "unexpected end of JSON input" {
			idx = int64(len(raw))
		}
		line, col := position(raw, idx)
		return fmt.Sprintf("%s at input index %d (line %d, position %d)", se.Error(), idx, line, col)
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		line, col := position(raw, te.Offset)
		if te.Field != "" {
			return fmt.Sprintf("field %q must be %s, not %s, at input index %d (line %d, position %d)", te.Field, jsonKind(te.Type.Kind().String()), te.Value, te.Offset, line, col)
		}
		return fmt.Sprintf("expected %s, not %s, at input index %d (line %d, position %d)", jsonKind(te.Type.Kind().String()), te.Value, te.Offset, line, col)
	}
	return "the body is not valid JSON"
}

// position turns a byte offset into a 1-based line and column.
func position(raw []byte, off int64) (line, col int) {
	line, col = 1, 1
	for i := int64(0); i < off && i < int64(len(raw)); i++ {
		if raw[i] == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return line, col
}

func jsonKind(k string) string {
	switch k {
	case "map", "struct":
		return "an object"
	case "slice", "array":
		return "an array"
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "ptr", "interface":
		return "a value"
	default:
		return "a number"
	}
}
