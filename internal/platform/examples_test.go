package platform_test

import (
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestJSExamples deploys the JavaScript examples as their READMEs say and
// checks what they answer: examples/js-hello zipped (results, logs, the
// rejected promise) and the examples/js-web form, reached without
// credentials.
func TestJSExamples(t *testing.T) {
	e := startJS(t, nil)
	g := e.guest()
	cli := cliAs(t, e, g)

	t.Run("js-hello", func(t *testing.T) {
		dir := filepath.Join("..", "..", "examples", "js-hello")
		if _, err := exec.LookPath("node"); err == nil {
			if out := run(t, dir, os.Environ(), "node", "test.js"); !strings.HasSuffix(out, "ok\n") {
				t.Errorf("node test.js: %q", out)
			}
		}
		// The README's zip -r ../../js-hello.zip package.json index.js lib
		// (directory entries included), or the same files zipped here.
		zipPath, err := filepath.Abs(filepath.Join(t.TempDir(), "js-hello.zip"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := exec.LookPath("zip"); err == nil {
			run(t, dir, os.Environ(), "zip", "-qr", zipPath, "package.json", "index.js", "lib")
		} else {
			zipped := zipDir(t, dir, "package.json", "index.js", "lib/greeting.js", "lib/greetings.json")
			if err := os.WriteFile(zipPath, zipped, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cli("action", "create", "js-hello", zipPath)

		act := e.invokeRecord(g, "js-hello", map[string]any{"name": "Ada", "lang": "fr"})
		res := act["response"].(map[string]any)["result"].(map[string]any)
		if !success(act) || res["greeting"] != "Bonjour Ada !" || res["action"] != "/guest/js-hello" || res["activation"] != act["activationId"] {
			t.Fatalf("activation: %v", act)
		}
		if logs := act["logs"].([]any); len(logs) != 1 || !strings.HasSuffix(logs[0].(string), " stdout: js-hello: greeting Ada in fr") {
			t.Fatalf("logs %q", logs)
		}
		if out := cli("action", "invoke", "js-hello", "-r"); !strings.Contains(out, `"greeting": "Hello world!"`) {
			t.Fatalf("invoke -r: %q", out)
		}

		act = e.invokeFailed(g, "js-hello", map[string]any{"lang": "xx"})
		resp := act["response"].(map[string]any)
		if resp["status"] != "application error" || resp["result"].(map[string]any)["error"] != `unknown language "xx": try one of en, fr, de, es` {
			t.Fatalf("unknown language: %v", resp)
		}
		logs := act["logs"].([]any)
		if len(logs) < 2 || !strings.HasSuffix(logs[0].(string), " stdout: js-hello: greeting world in xx") ||
			!strings.HasSuffix(logs[1].(string), " stderr: js-hello: no greeting in xx") {
			t.Fatalf("logs of the failure %q", logs)
		}
	})

	t.Run("js-web", func(t *testing.T) {
		cli("action", "create", "js-web", filepath.Join("..", "..", "examples", "js-web", "index.js"), "--web", "true")
		out := cli("action", "get", "js-web", "--url")
		u := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
		path := strings.TrimPrefix(u, e.p.APIHost())
		if path != "/api/v1/web/guest/default/js-web" {
			t.Fatalf("get --url: %q", out)
		}

		st, h, b := e.web("GET", path, nil, nil)
		if st != 200 || h.Get("Content-Type") != "text/html; charset=utf-8" || !strings.Contains(string(b), `<form method="post" action="">`) ||
			!strings.Contains(string(b), `<label for="name">`) {
			t.Fatalf("GET: %d %v %s", st, h, b)
		}
		form := url.Values{"name": {"<b>Ann</b>"}, "color": {"blue"}}
		st, h, b = e.web("POST", path, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, []byte(form.Encode()))
		if st != 200 || h.Get("Content-Type") != "text/html; charset=utf-8" ||
			!strings.Contains(string(b), "Hello <strong>&lt;b&gt;Ann&lt;/b&gt;</strong>, your colour is") || strings.Contains(string(b), "<b>Ann") {
			t.Fatalf("POST: %d %v %s", st, h, b)
		}
		st, _, b = e.web("POST", path, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, []byte("name=+"))
		if st != 400 || !strings.Contains(string(b), "Please give your name.") {
			t.Fatalf("POST without a name: %d %s", st, b)
		}
		if st, h, _ := e.web("PUT", path, nil, nil); st != 405 || h.Get("Allow") != "GET, POST" {
			t.Fatalf("PUT: %d %v", st, h)
		}
		// No longer exported, it is not found.
		cli("action", "update", "js-web", "--web", "false")
		if st, _, _ := e.web("GET", path, nil, nil); st != 404 {
			t.Fatalf("after --web false: %d", st)
		}
	})
}
