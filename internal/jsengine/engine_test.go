package main

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// loopRun runs the engine natively in the loop convention on the given
// activation lines and returns its result lines and logs.
func loopRun(t *testing.T, code []byte, main string, lines ...string) (results []string, logs string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	env := map[string]string{envLoop: "1", envMain: main, envKind: "nodejs:20"}
	in := strings.Join(lines, "\n")
	if len(lines) > 0 {
		in += "\n"
	}
	status := run(strings.NewReader(in), &stdout, &stderr, func(k string) string { return env[k] },
		func() ([]byte, error) { return code, nil })
	if status != exitOK {
		t.Fatalf("exit status %d; logs:\n%s", status, stderr.String())
	}
	out := strings.TrimSuffix(stdout.String(), "\n")
	if out == "" {
		return nil, stderr.String()
	}
	return strings.Split(out, "\n"), stderr.String()
}

func activation(params string) string {
	return `{"value":` + params + `,"activation_id":"0123abcd","namespace":"guest","action_name":"/guest/hello","deadline":"1700000000000"}`
}

func zipOf(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for name, content := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// jsonEq compares two JSON texts by value.
func jsonEq(t *testing.T, got, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Errorf("result %q is not JSON: %v", got, err)
		return false
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want %q: %v", want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	return bytes.Equal(gb, wb)
}

func TestActions(t *testing.T) {
	tests := []struct {
		name, code, main, params, want string
	}{
		{"function main", `function main(p) { return {greeting: 'Hello ' + p.name + '!'} }`, "", `{"name":"JS"}`, `{"greeting":"Hello JS!"}`},
		{"exports.main", `exports.main = p => ({n: p.n + 1})`, "", `{"n":1}`, `{"n":2}`},
		{"module.exports.main", `module.exports.main = function (p) { return {ok: true} }`, "", `{}`, `{"ok":true}`},
		{"module.exports function", `module.exports = function (p) { return {x: 1} }`, "", `{}`, `{"x":1}`},
		{"custom entry", `function hello(p) { return {who: p.who} }`, "hello", `{"who":"me"}`, `{"who":"me"}`},
		{"async", `async function main(p) { await null; return {v: p.v * 2} }`, "", `{"v":21}`, `{"v":42}`},
		{"promise with timer", `function main() { return new Promise(r => setTimeout(() => r({done: true}), 5)) }`, "", `{}`, `{"done":true}`},
		{"await timers in order", `async function main() {
			const order = [];
			await Promise.all([
				new Promise(r => setTimeout(() => { order.push(2); r() }, 20)),
				new Promise(r => setTimeout(() => { order.push(1); r() }, 1)),
				new Promise(r => setImmediate(() => { order.push(0); r() })),
			]);
			return {order};
		}`, "", `{}`, `{"order":[0,1,2]}`},
		{"interval cleared", `function main() { return new Promise(r => { let n = 0; const t = setInterval(() => { if (++n === 3) { clearInterval(t); r({n}) } }, 1) }) }`, "", `{}`, `{"n":3}`},
		{"thenable", `function main() { return {then(ok) { ok({t: 1}) }} }`, "", `{}`, `{"t":1}`},
		{"undefined result", `function main() {}`, "", `{}`, `{}`},
		{"thrown error", `function main() { throw new Error('boom') }`, "", `{}`, `{"error":"boom"}`},
		{"rejected promise", `async function main() { throw new TypeError('bad input') }`, "", `{}`, `{"error":"bad input"}`},
		{"rejected with object", `function main() { return Promise.reject({code: 7}) }`, "", `{}`, `{"error":{"code":7}}`},
		{"rejected with string", `function main() { return Promise.reject('nope') }`, "", `{}`, `{"error":"nope"}`},
		{"never settles", `function main() { return new Promise(() => {}) }`, "", `{}`,
			`{"error":"The action returned a promise that never settles: nothing is left that could resolve it (no timer is pending)."}`},
		{"timer throws", `function main() { return new Promise(() => setTimeout(() => { throw new Error('late') }, 1)) }`, "", `{}`,
			`{"error":"Uncaught exception in a timer callback: late"}`},
		{"env", `function main() { const e = process.env; return {id: e.__OW_ACTIVATION_ID, ns: e.__OW_NAMESPACE, name: e.__OW_ACTION_NAME, dl: e.__OW_DEADLINE} }`, "", `{}`,
			`{"id":"0123abcd","ns":"guest","name":"/guest/hello","dl":"1700000000000"}`},
		{"no main", `function other() {}`, "", `{}`, `{"error":"the action has no function \"main\" (define function main(params), or set exports.main)"}`},
		{"syntax error", `function main( {`, "", `{}`, ``},
		{"throw at load", `throw new Error('init failed')`, "", `{}`, `{"error":"initializing the action failed: init failed"}`},
		{"bad entry", `function main() {}`, "a-b", `{}`, `{"error":"the entry point \"a-b\" is not a JavaScript identifier"}`},
		{"buffer", `function main() { const b = Buffer.from('héllo'); return {hex: b.toString('hex'), b64: b.toString('base64'), is: Buffer.isBuffer(b), len: Buffer.byteLength('héllo'), latin1: Buffer.from([0xe9]).toString('latin1'), url: Buffer.from('??>').toString('base64url'), json: JSON.stringify(Buffer.from('ab'))} }`, "", `{}`,
			`{"hex":"68c3a96c6c6f","b64":"aMOpbGxv","is":true,"len":6,"latin1":"é","url":"Pz8-","json":"{\"type\":\"Buffer\",\"data\":[97,98]}"}`},
		{"url", `function main() { const u = new URL('https://example.com:8080/a/b?x=1&y=2#h'); return {host: u.host, path: u.pathname, x: u.searchParams.get('x'), q: new URLSearchParams({a: '1 2'}).toString()} }`, "", `{}`,
			`{"host":"example.com:8080","path":"/a/b","x":"1","q":"a=1+2"}`},
		{"text codec", `function main() { const b = new TextEncoder().encode('€'); return {b: Array.from(b), s: new TextDecoder().decode(b), bad: new TextDecoder().decode(new Uint8Array([0xff]))} }`, "", `{}`,
			`{"b":[226,130,172],"s":"€","bad":"\ufffd"}`},
		{"crypto", `function main() {
			const u = crypto.randomUUID();
			const a = crypto.getRandomValues(new Uint8Array(16));
			const c = require('crypto');
			return {uuid: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(u), len: a.length,
				sha: c.createHash('sha256').update('abc').digest('hex'),
				hmac: c.createHmac('sha256', 'key').update('The quick brown fox jumps over the lazy dog').digest('hex'),
				rb: c.randomBytes(8).length}
		}`, "", `{}`,
			`{"uuid":true,"len":16,"sha":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad","hmac":"f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8","rb":8}`},
		{"atob btoa", `function main() { return {a: btoa('hi'), b: atob('aGk=')} }`, "", `{}`, `{"a":"aGk=","b":"hi"}`},
		{"path and util", `function main() { const p = require('path'), u = require('util'); return {j: p.join('/a', 'b', '../c'), f: u.format('%s=%d', 'x', 5), b: p.basename('/x/y.js', '.js')} }`, "", `{}`,
			`{"j":"/a/c","f":"x=5","b":"y"}`},
		{"events", `const EventEmitter = require('events'); function main() { const e = new EventEmitter(); let n = 0; e.on('x', v => n += v); e.once('x', v => n += 10); e.emit('x', 1); e.emit('x', 1); return {n} }`, "", `{}`, `{"n":12}`},
		{"no fs", `function main() { try { require('fs'); return {} } catch (e) { return {msg: e.message} } }`, "", `{}`,
			`{"msg":"module 'fs' is not available: clemmys functions have no file system"}`},
		{"no http", `function main() { try { require('node:https'); return {} } catch (e) { return {msg: e.message} } }`, "", `{}`,
			`{"msg":"module 'https' is not available: clemmys functions have no network access"}`},
		{"no fetch", `async function main() { try { await fetch('https://example.com'); return {} } catch (e) { return {msg: e.message} } }`, "", `{}`,
			`{"msg":"fetch is not available: clemmys functions have no network access"}`},
		{"recursion", `function f(n) { return f(n + 1) } function main() { f(0) }`, "", `{}`, `{"error":"RangeError: Maximum call stack size exceeded"}`},
		{"process", `function main() { return {v: process.version, cwd: process.cwd(), hr: process.hrtime().length} }`, "", `{}`, `{"v":"v20.0.0","cwd":"/action","hr":2}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			results, logs := loopRun(t, []byte(tt.code), tt.main, activation(tt.params))
			if len(results) != 1 {
				t.Fatalf("%d result lines, want 1: %q; logs:\n%s", len(results), results, logs)
			}
			if tt.want == "" { // an error whose exact text is goja's
				if !strings.HasPrefix(results[0], `{"error":"the action's code does not compile: SyntaxError`) {
					t.Fatalf("result %s, want a syntax error", results[0])
				}
				return
			}
			if !jsonEq(t, results[0], tt.want) {
				t.Fatalf("result %s, want %s; logs:\n%s", results[0], tt.want, logs)
			}
		})
	}
}

func TestConsole(t *testing.T) {
	fixed := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	defer func(f func() time.Time) { nowFunc = f }(nowFunc)
	nowFunc = func() time.Time { return fixed }
	code := `async function main(p) {
		console.log('hello', p.name, {a: 1, b: [1, 'x']});
		await new Promise(r => setTimeout(r, 1));
		console.error(new Error('oops').message);
		console.warn('two\nlines');
		console.info('%s is %d', 'n', 42);
		return {}
	}`
	results, logs := loopRun(t, []byte(code), "", activation(`{"name":"JS"}`))
	if len(results) != 1 || results[0] != "{}" {
		t.Fatalf("results %q", results)
	}
	ts := "2024-05-06T07:08:09.123456789Z"
	want := ts + " stdout: hello JS { a: 1, b: [ 1, 'x' ] }\n" +
		ts + " stderr: oops\n" +
		ts + " stderr: two\n" +
		ts + " stderr: lines\n" +
		ts + " stdout: n is 42\n"
	if logs != want {
		t.Fatalf("logs:\n%s\nwant:\n%s", logs, want)
	}
}

// Global state persists between the activations of an instance, as in a
// warm OpenWhisk container, and each activation gets its own metadata.
func TestWarmState(t *testing.T) {
	code := `let n = 0; function main() { n++; return {n, id: process.env.__OW_ACTIVATION_ID} }`
	results, _ := loopRun(t, []byte(code), "",
		`{"value":{},"activation_id":"a1"}`, `{"value":{},"activation_id":"a2"}`, ``, `not json`, `{"value":[1]}`, `{"value":{}}`)
	want := []string{`{"n":1,"id":"a1"}`, `{"n":2,"id":"a2"}`, `{"n":3}`,
		`{"error":"the activation is not valid JSON"}`, `{"error":"parameters must be a JSON object"}`, `{"n":4}`}
	if len(results) != len(want) {
		t.Fatalf("results %q", results)
	}
	for i := range want {
		if !jsonEq(t, results[i], want[i]) {
			t.Errorf("activation %d: %s, want %s", i, results[i], want[i])
		}
	}
}

func TestZip(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"package.json main", map[string]string{
			"package.json":                   `{"name":"a","main":"lib/entry.js"}`,
			"lib/entry.js":                   `const greet = require('./greet'); const data = require('../data.json'); const lp = require('left-pad'); exports.main = async p => ({msg: greet(p.name), n: data.n, pad: lp('x', 3)})`,
			"lib/greet.js":                   `module.exports = name => 'Hello ' + name`,
			"data.json":                      `{"n": 7}`,
			"node_modules/left-pad/index.js": `module.exports = (s, n) => ' '.repeat(n - s.length) + s`,
		}, `{"msg":"Hello zip","n":7,"pad":"  x"}`},
		{"index.js", map[string]string{"index.js": `exports.main = () => ({ok: 1})`}, `{"ok":1}`},
		{"one folder", map[string]string{"action/index.js": `exports.main = () => ({ok: 2})`}, `{"ok":2}`},
		{"no entry", map[string]string{"lib/a.js": `x`, "b.js": `y`},
			`{"error":"the action's zip archive has no package.json with a main file and no index.js at its root"}`},
		{"no main export", map[string]string{"index.js": `exports.other = () => 1`},
			`{"error":"the action's main module does not export a function \"main\" (set exports.main)"}`},
		{"escape", map[string]string{"../evil.js": `x`},
			`{"error":"the action's zip archive has a file outside the archive: \"../evil.js\""}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			results, logs := loopRun(t, zipOf(t, tt.files), "", activation(`{"name":"zip"}`))
			if len(results) != 1 || !jsonEq(t, results[0], tt.want) {
				t.Fatalf("results %q, want %s; logs:\n%s", results, tt.want, logs)
			}
		})
	}
}

func TestOneShot(t *testing.T) {
	for _, tt := range []struct {
		code, in, out string
		status        int
	}{
		{`function main(p) { return {x: p.x} }`, `{"x":1}`, `{"x":1}`, exitOK},
		{`function main(p) { throw new Error('no') }`, `{}`, `{"error":"no"}`, exitApplicationErr},
		{`function main(p) { return {} }`, `[1]`, `{"error":"parameters must be a JSON object"}`, exitDeveloperErr},
	} {
		var stdout, stderr bytes.Buffer
		status := run(strings.NewReader(tt.in), &stdout, &stderr, func(string) string { return "" },
			func() ([]byte, error) { return []byte(tt.code), nil })
		if status != tt.status || strings.TrimSpace(stdout.String()) != tt.out {
			t.Errorf("%s: status %d, out %q; want %d, %q", tt.code, status, stdout.String(), tt.status, tt.out)
		}
	}
}

func FuzzParseActivation(f *testing.F) {
	f.Add([]byte(activation(`{"a":1}`)))
	f.Add([]byte(``))
	f.Add([]byte(`{"value":null}`))
	f.Add([]byte(`{"value":"x","deadline":5}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		params, _, err := parseActivation(line)
		if err == nil && (!json.Valid(params) || params[0] != '{') {
			t.Fatalf("accepted params %q", params)
		}
	})
}

func FuzzUnzip(f *testing.F) {
	f.Add(zipOf(f, map[string]string{"index.js": "x", "a/b.js": "y"}))
	f.Add([]byte("PK\x03\x04garbage"))
	f.Fuzz(func(t *testing.T, code []byte) {
		files, err := unzip(code)
		if err != nil {
			return
		}
		var total int
		for name, b := range files {
			if !strings.HasPrefix(name, actionPrefix) || strings.Contains(name, "..") {
				t.Fatalf("file %q outside the action", name)
			}
			total += len(b)
		}
		if total > maxZipBytes {
			t.Fatalf("unpacked %d bytes", total)
		}
	})
}
