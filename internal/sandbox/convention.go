package sandbox

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
)

// The loop calling convention and the fresh-instance request (see the
// package documentation). A module opts in by exporting functions of type
// [] -> [] with these names; package sdk does it for every Go function, and
// package sdk/fresh adds the fresh-instance marker.
const (
	// loopExport marks a module that speaks the loop convention when its
	// environment has LoopEnv=1.
	loopExport = "clemmys.loop.v1"
	// loopV2Export marks a module that speaks the loop convention
	// version 2: each input line carries the activation's metadata.
	loopV2Export = "clemmys.loop.v2"
	// freshExport marks a module whose every activation must run in an
	// instance that served no other activation.
	freshExport = "clemmys.fresh.v1"
	// reactorExport is the function a reactor module (one that exports
	// _initialize) serves each activation with, called on the caller's
	// goroutine: params on stdin, result line on stdout, logs on stderr.
	reactorExport = "clemmys.reactor.v1"
	// LoopEnv is the environment variable, set to "1", that tells a guest
	// exporting loopExport to serve activations in a loop.
	LoopEnv = "CLEMMYS_LOOP"
)

// loopLine turns an activation's params into one line of the loop
// convention, newline included. JSON never needs a raw newline: valid JSON
// is compacted (insignificant white space, newlines included, removed),
// empty or blank input is an empty line (the sdk reads it as {}), and in
// invalid input each newline becomes a NUL byte, which keeps it invalid
// (a raw control character is invalid in a string and outside one) so the
// guest refuses it as it would have in one shot.
func loopLine(input []byte) []byte {
	trimmed := bytes.TrimSpace(input)
	switch {
	case len(trimmed) == 0:
		return []byte{'\n'}
	case bytes.IndexByte(trimmed, '\n') < 0:
		return append(trimmed[:len(trimmed):len(trimmed)], '\n')
	case json.Valid(trimmed):
		var b bytes.Buffer
		b.Grow(len(trimmed) + 1)
		_ = json.Compact(&b, trimmed) // valid, so it cannot fail
		b.WriteByte('\n')
		return b.Bytes()
	default:
		line := bytes.ReplaceAll(trimmed, []byte{'\n'}, []byte{0})
		return append(line, '\n')
	}
}

// oneLine reports whether out is exactly one newline-terminated line: what
// a loop-convention guest writes to stdout per activation.
func oneLine(out []byte) bool {
	return len(out) > 0 && bytes.IndexByte(out, '\n') == len(out)-1
}

// loopLineV2 is an activation's line in the loop convention version 2, in
// the form of OpenWhisk's action loop: {"value": params, "activation_id":
// …, "namespace": …, "action_name": …, "deadline": "<unix ms>"}, newline
// included. Blank params are {}; params that are not valid JSON are sent
// as a JSON string, which the guest refuses as not an object, as it would
// refuse them in the other conventions.
func loopLineV2(act Activation, deadline time.Time) []byte {
	params := bytes.TrimSpace(act.Params)
	var b bytes.Buffer
	b.Grow(len(params) + 160)
	b.WriteString(`{"value":`)
	switch {
	case len(params) == 0:
		b.WriteString("{}")
	case json.Valid(params):
		_ = json.Compact(&b, params) // valid, so it cannot fail
	default:
		s, _ := json.Marshal(string(params)) // a string always encodes
		b.Write(s)
	}
	field := func(name, v string) {
		if v == "" {
			return
		}
		s, _ := json.Marshal(v)
		b.WriteString(`,"` + name + `":`)
		b.Write(s)
	}
	field("activation_id", act.ID)
	field("namespace", act.Namespace)
	field("action_name", act.Action)
	field("deadline", strconv.FormatInt(deadline.UnixMilli(), 10))
	b.WriteString("}\n")
	return b.Bytes()
}
