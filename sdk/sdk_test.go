package sdk

import (
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	greet := func(p map[string]any) (map[string]any, error) {
		name, _ := p["name"].(string)
		return map[string]any{"greeting": "Hello " + name + "!"}, nil
	}
	echo := func(p map[string]any) (map[string]any, error) { return p, nil }

	tests := []struct {
		name     string
		in       string
		fn       func(map[string]any) (map[string]any, error)
		wantCode int
		wantOut  string // exact stdout
		wantLog  string // substring of stderr
	}{
		{"greeting", `{"name":"Ada"}`, greet, 0, `{"greeting":"Hello Ada!"}` + "\n", ""},
		{"no html escaping", `{"name":"<b>&"}`, greet, 0, `{"greeting":"Hello <b>&!"}` + "\n", ""},
		{"empty input is {}", "", echo, 0, "{}\n", ""},
		{"whitespace input is {}", " \n\t", echo, 0, "{}\n", ""},
		{"null result is {}", `{}`, func(map[string]any) (map[string]any, error) { return nil, nil }, 0, "{}\n", ""},
		{"echo types", `{"a":1,"b":[true,null],"c":{"d":"e"}}`, echo, 0, `{"a":1,"b":[true,null],"c":{"d":"e"}}` + "\n", ""},
		{"application error", `{}`, func(map[string]any) (map[string]any, error) { return nil, errors.New("boom") }, 1, `{"error":"boom"}` + "\n", ""},
		{"error wins over result", `{}`, func(map[string]any) (map[string]any, error) { return map[string]any{"x": 1}, errors.New("boom") }, 1, `{"error":"boom"}` + "\n", ""},
		{"array input", `[1,2]`, echo, 2, `{"error":"parameters must be a JSON object"}` + "\n", ""},
		{"null input", `null`, echo, 2, `{"error":"parameters must be a JSON object"}` + "\n", ""},
		{"string input", `"x"`, echo, 2, `{"error":"parameters must be a JSON object"}` + "\n", ""},
		{"invalid json", `{"a":`, echo, 2, "", ""},
		{"trailing garbage", `{"a":1} x`, echo, 2, "", ""},
		{"two objects", `{"a":1}{"b":2}`, echo, 2, "", ""},
		{"panic", `{}`, func(map[string]any) (map[string]any, error) { panic("kaboom") }, 2, `{"error":"function panicked"}` + "\n", "panic: kaboom"},
		{"unencodable result", `{}`, func(map[string]any) (map[string]any, error) { return map[string]any{"c": make(chan int)}, nil }, 2, `{"error":"function result is not valid JSON"}` + "\n", "cannot encode result"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := run(strings.NewReader(tt.in), &stdout, &stderr, tt.fn)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			if tt.wantOut != "" && stdout.String() != tt.wantOut {
				t.Errorf("stdout = %q, want %q", stdout.String(), tt.wantOut)
			}
			// Whatever happens, stdout is exactly one JSON object.
			var obj map[string]any
			if err := json.Unmarshal([]byte(stdout.String()), &obj); err != nil || obj == nil {
				t.Errorf("stdout %q is not a JSON object: %v", stdout.String(), err)
			}
			if tt.wantCode != 0 {
				if _, ok := obj["error"].(string); !ok {
					t.Errorf("stdout %q has no error string", stdout.String())
				}
			}
			if !strings.Contains(stderr.String(), tt.wantLog) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.wantLog)
			}
		})
	}
}

func TestRunInputLimit(t *testing.T) {
	called := false
	fn := func(map[string]any) (map[string]any, error) { called = true; return nil, nil }

	// An input of exactly MaxInputBytes is accepted.
	var stdout, stderr strings.Builder
	atLimit := `{"a":"` + strings.Repeat("x", MaxInputBytes-len(`{"a":""}`)) + `"}`
	if code := run(strings.NewReader(atLimit), &stdout, &stderr, fn); code != 0 || !called {
		t.Fatalf("input of exactly MaxInputBytes: code %d, called %v, stdout %.100q", code, called, stdout.String())
	}

	// One byte more is refused without reading the rest of an endless stream.
	called = false
	stdout.Reset()
	endless := io.MultiReader(strings.NewReader(`{"a":"`), infinite('x'))
	if code := run(endless, &stdout, &stderr, fn); code != 2 || called {
		t.Fatalf("oversized input: code %d, called %v", code, called)
	}
	if !strings.Contains(stdout.String(), "exceed") {
		t.Errorf("stdout = %q, want a size error", stdout.String())
	}
}

func TestRunReadError(t *testing.T) {
	var stdout, stderr strings.Builder
	code := run(errReader{}, &stdout, &stderr, func(map[string]any) (map[string]any, error) { return nil, nil })
	if code != 2 || !strings.Contains(stdout.String(), "cannot read parameters") {
		t.Fatalf("code %d, stdout %q", code, stdout.String())
	}
}

type infinite byte

func (b infinite) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestLoop(t *testing.T) {
	calls := 0
	fn := func(p map[string]any) (map[string]any, error) {
		calls++
		switch {
		case p["fail"] != nil:
			return nil, errors.New("boom")
		case p["panic"] != nil:
			panic("kaboom")
		case p["chan"] != nil:
			return map[string]any{"c": make(chan int)}, nil
		}
		p["calls"] = calls
		return p, nil
	}
	in := strings.Join([]string{
		`{"a":1}`,
		``,          // {}
		` {"b":2} `, // blanks around
		`[1]`,       // bad params: reported, the loop goes on
		`{"fail":1}`,
		`{"chan":1}`,
		`{"c":3}`,
		`{"panic":1}`, // ends the loop
		`{"never":1}`,
	}, "\n") + "\n"
	var stdout, stderr strings.Builder
	code := loop(strings.NewReader(in), &stdout, &stderr, fn)
	if code != 2 {
		t.Errorf("exit code %d, want 2 after a panic", code)
	}
	want := []string{
		`{"a":1,"calls":1}`,
		`{"calls":2}`,
		`{"b":2,"calls":3}`,
		`{"error":"parameters must be a JSON object"}`,
		`{"error":"boom"}`,
		`{"error":"function result is not valid JSON"}`,
		`{"c":3,"calls":6}`,
		`{"error":"function panicked"}`,
	}
	if got := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n"); !slices.Equal(got, want) {
		t.Errorf("stdout lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, s := range []string{"cannot encode result", "panic: kaboom"} {
		if !strings.Contains(stderr.String(), s) {
			t.Errorf("stderr %q does not contain %q", stderr.String(), s)
		}
	}

	// End of input ends the loop cleanly, with or without a final newline.
	for _, in := range []string{"", "{}\n", "{}\n{}", "\n"} {
		stdout.Reset()
		if code := loop(strings.NewReader(in), &stdout, &stderr, fn); code != 0 {
			t.Errorf("input %q: exit code %d", in, code)
		}
		if n := strings.Count(stdout.String(), "\n"); n != strings.Count(in, "\n")+boolInt(in != "" && !strings.HasSuffix(in, "\n")) {
			t.Errorf("input %q: %d result lines %q", in, n, stdout.String())
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestLoopInputLimit(t *testing.T) {
	fn := func(map[string]any) (map[string]any, error) { return nil, nil }
	atLimit := `{"a":"` + strings.Repeat("x", MaxInputBytes-len(`{"a":""}`)) + `"}`
	var stdout, stderr strings.Builder
	if code := loop(strings.NewReader(atLimit+"\n"+atLimit), &stdout, &stderr, fn); code != 0 || stdout.String() != "{}\n{}\n" {
		t.Fatalf("lines of exactly MaxInputBytes: code %d, stdout %.100q", code, stdout.String())
	}
	stdout.Reset()
	endless := io.MultiReader(strings.NewReader(`{"a":"`), infinite('x'))
	if code := loop(endless, &stdout, &stderr, fn); code != 2 || !strings.Contains(stdout.String(), "exceed") {
		t.Fatalf("oversized line: code %d, stdout %q", code, stdout.String())
	}
	stdout.Reset()
	if code := loop(errReader{}, &stdout, &stderr, fn); code != 2 || !strings.Contains(stdout.String(), "cannot read parameters") {
		t.Fatalf("read error: code %d, stdout %q", code, stdout.String())
	}
}
