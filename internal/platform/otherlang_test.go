package platform_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// rustWASI finds a rustc that has the standard library of a WASI target
// (wasm32-wasip1, or wasm32-wasi before Rust 1.78) and returns it and the
// target; "" when there is none.
func rustWASI() (rustc, target string) {
	for _, c := range []string{"rustc", "/usr/bin/rustc"} {
		p, err := exec.LookPath(c)
		if err != nil {
			continue
		}
		out, err := exec.Command(p, "--print", "sysroot").Output()
		if err != nil {
			continue
		}
		sysroot := strings.TrimSpace(string(out))
		for _, t := range []string{"wasm32-wasip1", "wasm32-wasi"} {
			if st, err := os.Stat(filepath.Join(sysroot, "lib", "rustlib", t, "lib")); err == nil && st.IsDir() {
				return p, t
			}
		}
	}
	return "", ""
}

// TestRustFunction builds examples/rust-hello, a function in Rust that
// follows the I/O contract of docs/functions.md by hand (no SDK), and
// deploys and invokes it: the contract as a function in another language
// sees it. Skipped without a rustc for a WASI target.
func TestRustFunction(t *testing.T) {
	rustc, target := rustWASI()
	if rustc == "" && os.Getenv("CLEMMYS_REQUIRE_RUST") != "" {
		t.Fatal("CLEMMYS_REQUIRE_RUST is set but there is no rustc with the standard library of wasm32-wasip1 or wasm32-wasi")
	}
	if rustc == "" {
		t.Skip("no rustc with the standard library of wasm32-wasip1 or wasm32-wasi (rustup target add wasm32-wasip1)")
	}
	wasm := filepath.Join(t.TempDir(), "rust-hello.wasm")
	run(t, ".", os.Environ(), rustc, "--edition", "2021", "-O", "-C", "strip=debuginfo", "--target", target,
		"-o", wasm, filepath.Join("..", "..", "examples", "rust-hello", "src", "main.rs"))

	e := start(t, t.TempDir())
	cli := cliAs(t, e, e.guest())
	cli("action", "create", "rust-hello", wasm)
	act := e.invokeRecord(e.guest(), "rust-hello", map[string]any{"name": "Ada"})
	res := act["response"].(map[string]any)["result"].(map[string]any)
	params, _ := res["params"].(map[string]any)
	if !success(act) || res["greeting"] != "Hello from Rust!" || params["name"] != "Ada" {
		t.Fatalf("activation: %v", act)
	}
	// It speaks the loop convention: an instance counts what it served.
	if n, _ := res["served"].(float64); n < 1 {
		t.Fatalf("served %v", res["served"])
	}
	if logs := act["logs"].([]any); len(logs) != 1 || !strings.Contains(logs[0].(string), "stderr: rust-hello: activation ") {
		t.Fatalf("logs %q", logs)
	}
	if out := cli("action", "invoke", "rust-hello", "-p", "n", "2", "-r"); !strings.Contains(out, `"n": 2`) {
		t.Fatalf("invoke -r: %q", out)
	}
}
