// Package utils holds the logic of the /whisk.system/utils actions, the
// clemmys port of OpenWhisk's catalog package of the same name
// (openwhisk-catalog, packages/utils): echo, cat, sort, split, head, date
// and smash. Each action is a main package in a subdirectory
// (internal/catalog/utils/<name>) that calls sdk.Run with one of these
// functions; keeping the logic here lets it be unit-tested natively.
//
// The functions follow the JavaScript originals, including their
// defaults: cat joins params.lines with "\n", sort sorts lines as
// JavaScript's Array.prototype.sort does (by their string forms, in UTF-16
// code unit order), split splits params.payload by params.separator
// (default: line breaks), head keeps the first params.num lines (default
// 1). The catalog's namespace and hosturl actions read the platform's
// environment (__OW_NAMESPACE, __OW_API_HOST), which a clemmys function
// does not have, so they are not ported.
package utils

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
)

// Echo returns its parameters unchanged (utils/echo.js).
func Echo(params map[string]any) (map[string]any, error) {
	if params == nil {
		params = map[string]any{}
	}
	return params, nil
}

// Cat joins params.lines with newlines into payload (utils/cat.js):
// {"lines": [...], "payload": "a\nb"}.
func Cat(params map[string]any) (map[string]any, error) {
	lines, err := linesParam(params)
	if err != nil {
		return nil, err
	}
	parts := make([]string, len(lines))
	for i, l := range lines {
		parts[i] = joinString(l)
	}
	out := map[string]any{"lines": lines, "payload": strings.Join(parts, "\n")}
	logf("cat: returning %s", jsonString(out))
	return out, nil
}

// Sort sorts params.lines (utils/sort.js): {"lines": [...], "length": n}.
// Like JavaScript's default sort it compares the lines' string forms in
// UTF-16 code unit order and is stable.
func Sort(params map[string]any) (map[string]any, error) {
	lines, err := linesParam(params)
	if err != nil {
		return nil, err
	}
	logf("sort before: %s", jsonString(lines))
	sorted := slices.Clone(lines)
	slices.SortStableFunc(sorted, func(a, b any) int {
		return compareUTF16(jsString(a), jsString(b))
	})
	logf("sort after: %s", jsonString(sorted))
	return map[string]any{"lines": sorted, "length": len(sorted)}, nil
}

// Split splits params.payload by params.separator into lines
// (utils/split.js): {"lines": [...], "payload": <payload>}. The separator
// is a plain string; without one (or with ""), payload is split at line
// breaks (\n or \r\n).
func Split(params map[string]any) (map[string]any, error) {
	payload, ok := params["payload"]
	if !ok || payload == nil {
		return nil, errors.New("split: parameter payload is required")
	}
	s := jsString(payload)
	var parts []string
	switch sep := params["separator"].(type) {
	case nil:
		parts = splitLines(s)
	case string:
		if sep == "" {
			parts = splitLines(s)
		} else {
			parts = strings.Split(s, sep)
		}
	default:
		return nil, errors.New("split: parameter separator must be a string")
	}
	lines := make([]any, len(parts))
	for i, p := range parts {
		lines[i] = p
	}
	out := map[string]any{"lines": lines, "payload": payload}
	logf("split: returning %s", jsonString(out))
	return out, nil
}

// Head returns the first params.num lines of params.lines (utils/head.js):
// {"lines": [...], "num": num}. num defaults to 1; a negative num drops that
// many lines from the end, as JavaScript's slice does.
func Head(params map[string]any) (map[string]any, error) {
	lines, err := linesParam(params)
	if err != nil {
		return nil, err
	}
	num := params["num"]
	n, ok := toInteger(num)
	if !ok {
		return nil, errors.New("head: parameter num must be a number")
	}
	if n == 0 { // msg.num || 1
		n, num = 1, 1
	}
	end := n
	if end < 0 {
		end = max(int64(len(lines))+end, 0)
	}
	end = min(end, int64(len(lines)))
	head := slices.Clone(lines[:end])
	logf("head: first %d of %d lines: %s", n, len(lines), jsonString(head))
	return map[string]any{"lines": head, "num": num}, nil
}

// now is the clock of Date (tests replace it).
var now = time.Now

// Date returns the current date and time (utils/date.js): {"date":
// "2006-01-02T15:04:05.000Z"}, the JSON form of a JavaScript Date.
func Date(map[string]any) (map[string]any, error) {
	t := now().UTC()
	logf("It is now %s", t.Format(time.RFC1123))
	return map[string]any{"date": t.Format("2006-01-02T15:04:05.000Z")}, nil
}

// Smash nests all parameters under the property named by params.$fieldName
// (utils/smash.js; params.fieldName is accepted too): {"$fieldName": "p",
// "a": 1} gives {"p": {"a": 1}}.
func Smash(params map[string]any) (map[string]any, error) {
	field, ok := params["$fieldName"].(string)
	if !ok || field == "" {
		field, ok = params["fieldName"].(string)
	}
	if !ok || field == "" {
		return nil, errors.New("smash: parameter $fieldName is required (the property to nest the parameters under)")
	}
	inner := make(map[string]any, len(params))
	for k, v := range params {
		if k != "$fieldName" && k != "fieldName" {
			inner[k] = v
		}
	}
	return map[string]any{field: inner}, nil
}

// splitLines splits s at line breaks, as JavaScript's s.split(/\r?\n/).
func splitLines(s string) []string {
	parts := strings.Split(s, "\n")
	for i, p := range parts {
		parts[i] = strings.TrimSuffix(p, "\r")
	}
	return parts
}

// linesParam is params.lines, an array ([] when absent).
func linesParam(params map[string]any) ([]any, error) {
	switch l := params["lines"].(type) {
	case nil:
		return []any{}, nil
	case []any:
		return l, nil
	default:
		return nil, errors.New("parameter lines must be an array")
	}
}

// jsString is JavaScript's String(v) for a JSON value.
func jsString(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return jsNumber(x)
	case json.Number:
		return x.String()
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = joinString(e)
		}
		return strings.Join(parts, ",")
	case map[string]any:
		return "[object Object]"
	default:
		return fmt.Sprint(x)
	}
}

// joinString is how Array.prototype.join shows an element: null as "".
func joinString(v any) string {
	if v == nil {
		return ""
	}
	return jsString(v)
}

// jsNumber formats a number as JavaScript does for the common cases
// (integers without a fraction, otherwise the shortest representation).
func jsNumber(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == math.Trunc(f) && math.Abs(f) < 1e21:
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// toInteger converts num (absent, a number or a numeric string) to an
// integer as JavaScript's slice does; absent is 0.
func toInteger(v any) (int64, bool) {
	switch x := v.(type) {
	case nil:
		return 0, true
	case float64:
		if math.IsNaN(x) {
			return 0, true
		}
		return int64(math.Max(math.Min(math.Trunc(x), 1<<53), -(1 << 53))), true
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil {
			return 0, false
		}
		return toInteger(f)
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// compareUTF16 compares strings by UTF-16 code units (JavaScript's order).
func compareUTF16(a, b string) int {
	ua, ub := utf16.Encode([]rune(a)), utf16.Encode([]rune(b))
	return slices.Compare(ua, ub)
}

func jsonString(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// logf writes one log line (the action's logs are its stderr).
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}
