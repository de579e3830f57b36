package platform_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/clemmys/clemmys/internal/console"
	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// chromiumPath finds a Chromium for the browser tests: $CLEMMYS_CHROMIUM,
// else chromium, chromium-browser, chromium-headless-shell or
// google-chrome on PATH. .ci/run installs Debian's chromium and sets
// CLEMMYS_REQUIRE_CHROMIUM, which turns a missing browser into a failure.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CLEMMYS_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "chromium-headless-shell", "headless-shell", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CLEMMYS_REQUIRE_CHROMIUM") != "" {
		t.Fatal("no Chromium found (CLEMMYS_REQUIRE_CHROMIUM is set): install Debian's chromium (apt-get install chromium) or set CLEMMYS_CHROMIUM")
	}
	t.Skip("skipping the console browser tests: no Chromium found; install Debian's chromium (apt-get install chromium) or set CLEMMYS_CHROMIUM")
	return ""
}

// screenshotDir is where the browser tests leave their screenshots for a
// reviewer: $CLEMMYS_SCREENSHOTS, else clemmys-console-screenshots in the
// system's temporary directory. It outlives the test.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CLEMMYS_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "clemmys-console-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("console screenshots: %s", dir)
	return dir
}

// TestConsoleBrowser drives the web console in headless Chromium against a
// real platform: sign in, deploy an action from a file, invoke it, see its
// activation in the live list, create and run a sequence and open its
// waterfall, see the trust panel and the metrics. It saves a screenshot of
// each page, and fails on any script error or CSP violation in the page.
func TestConsoleBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	shots := screenshotDir(t)
	e := start(t, t.TempDir())
	base := e.p.APIHost()

	// The console's own headers, over the real gateway.
	resp, err := e.client.Get(base + "/console/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Security-Policy") != console.CSP {
		t.Fatalf("GET /console/: %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "" {
		t.Errorf("the console allows cross-origin reads: Access-Control-Allow-Origin %q", v)
	}

	hello := filepath.Join(t.TempDir(), "hello.wasm")
	if err := os.WriteFile(hello, wasmbuild.MustBuild(t, "examples/hello"), 0o644); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.WindowSize(1280, 1000),
		// The gateway's certificate is the platform's own; the test
		// trusts it for this browser only.
		chromedp.Flag("ignore-certificate-errors", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses its sandbox as root
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	if err := chromedp.Do(bctx); err != nil { // start the browser, with no timeout
		t.Fatalf("start Chromium %s: %v", chromium, err)
	}
	// Generous: CI has two busy cores. Nothing here asserts a duration.
	ctx, cancel := context.WithTimeout(bctx, 5*time.Minute)
	defer cancel()

	var (
		mu       sync.Mutex
		problems []string
	)
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError || strings.Contains(m.Text, "Content Security Policy") {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s %s:%d %s", m.Type, m.URL, m.Line+1, m.Text))
				mu.Unlock()
			}
		}
	}()

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// waitFor polls a JavaScript predicate until it holds.
	waitFor := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[any](expr, chromedp.WithPollingTimeout(2*time.Minute), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
			text, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('main').innerText`))
			t.Fatalf("waiting for %s: %v\nthe page shows:\n%s", what, err, text)
		}
	}
	ready := func(path string) string {
		return fmt.Sprintf(`document.getElementById('main').getAttribute('data-ready') === %q`, path)
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	eval := func(expr string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Evaluate[any](expr)(ctx, t)
			return err
		})
	}
	js := func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	}

	// Sign in.
	do("open the console", chromedp.Navigate(base+"/console"))
	waitFor("the sign-in form", `document.getElementById('apikey') !== null`)
	shot("01-signin")
	do("sign in",
		chromedp.SendKeys(chromedp.ID("apikey"), e.guest()),
		chromedp.Click(chromedp.ID("signin")),
	)
	waitFor("the actions page", ready("/actions"))
	stored, err := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem('clemmys.auth')`))
	if err != nil || stored != e.guest() {
		t.Fatalf("the key is not in session storage: %v", err)
	}
	for _, where := range []string{`document.cookie`, `location.href`, `JSON.stringify(localStorage)`} {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](where))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(v, strings.SplitN(e.guest(), ":", 2)[1]) {
			t.Fatalf("the API key is in %s", where)
		}
	}

	// Deploy hello from a file.
	form := `form[aria-label="Create or update action"]`
	do("deploy hello",
		chromedp.Click(chromedp.CSS(`details.create > summary`)),
		chromedp.SetUploadFiles(chromedp.CSS(form+` input[name="code"]`), []string{hello}),
		chromedp.SetValue(chromedp.CSS(form+` input[name="name"]`), "hello"),
		chromedp.Click(chromedp.CSS(form+` button[type="submit"]`)),
	)
	waitFor("hello in the list", `[...document.querySelectorAll('#main table a')].some(a => a.textContent === 'hello')`)
	// And a sequence of two hellos, from the same form.
	do("create the sequence",
		chromedp.SetValue(chromedp.CSS(form+` input[name="name"]`), "twice"),
		chromedp.SetValue(chromedp.CSS(form+` select[name="kind"]`), "sequence"),
		chromedp.SetValue(chromedp.CSS(form+` input[name="components"]`), "/_/hello,/_/hello"),
		eval(`document.querySelector('`+form+` input[name="code"]').value = ''`),
		chromedp.Click(chromedp.CSS(form+` button[type="submit"]`)),
	)
	waitFor("twice in the list", `[...document.querySelectorAll('#main table a')].some(a => a.textContent === 'twice')`)
	do("fold the form", eval(`document.querySelector('details.create').open = false`))
	shot("02-actions")

	// Invoke hello with parameters from the editor.
	do("open hello", chromedp.Navigate(base+"/console/#/actions/hello"))
	waitFor("hello's page", ready("/actions/hello"))
	invoke := `form[aria-label="Invoke hello"]`
	do("invoke hello",
		chromedp.SetValue(chromedp.CSS(invoke+` textarea`), `{"name": "Browser"}`),
		chromedp.Click(chromedp.CSS(invoke+` button[type="submit"]`)),
	)
	waitFor("hello's result", `(document.querySelector('`+invoke+` pre[aria-label="Result"]')?.textContent ?? '').includes('Hello Browser!')`)
	waitFor("hello's logs", `(document.querySelector('`+invoke+` pre[aria-label="Logs"]')?.textContent ?? '').includes('greeting')`)
	shot("03-action-invoke")

	// The activation appears in the live list, without reloading.
	do("open the activations", chromedp.Navigate(base+"/console/#/activations"))
	waitFor("the activations page", ready("/activations"))
	waitFor("hello's activation", `[...document.querySelectorAll('#activation-list tbody tr')].some(r => r.cells[1]?.textContent === 'hello' && r.cells[2]?.textContent === 'success')`)
	// Run the sequence through the API: the polled list must show it.
	var seq struct {
		ActivationID string `json:"activationId"`
	}
	if st, _ := e.call(e.guest(), "POST", "/api/v1/namespaces/_/actions/twice?blocking=true", map[string]any{"name": "Seq"}, &seq); st != http.StatusOK || seq.ActivationID == "" {
		t.Fatalf("invoke twice: status %d", st)
	}
	waitFor("the sequence's activation in the live list", `[...document.querySelectorAll('#activation-list tbody tr')].some(r => r.cells[0]?.textContent === `+js(seq.ActivationID)+`)`)
	// The filter by name.
	do("filter by name",
		chromedp.SetValue(chromedp.CSS(`form.filters input[type="search"]`), "twice"),
		chromedp.Click(chromedp.CSS(`form.filters button[type="submit"]`)),
	)
	waitFor("only twice listed", `(() => { const r = [...document.querySelectorAll('#activation-list tbody tr')]; return r.length > 0 && r.every(x => x.cells[1]?.textContent === 'twice'); })()`)
	do("clear the filter",
		eval(`document.querySelector('form.filters input[type="search"]').value = ''`),
		chromedp.Click(chromedp.CSS(`form.filters button[type="submit"]`)),
	)
	waitFor("all listed again", `[...document.querySelectorAll('#activation-list tbody tr')].some(r => r.cells[1]?.textContent === 'hello')`)
	shot("04-activations")

	// The sequence's detail and its waterfall: a row per component with
	// its phases drawn.
	do("open the sequence", chromedp.Navigate(base+"/console/#/activation/"+seq.ActivationID))
	waitFor("the waterfall", `document.querySelectorAll('#waterfall svg g.row').length === 2 && document.querySelectorAll('#waterfall svg rect[data-phase="exec"]').length === 2`)
	// The runtime timed its sealing of each step (the sealTimeUs annotation).
	waitFor("the sealing phases", `document.querySelectorAll('#waterfall svg rect[data-phase="seal"]').length === 2`)
	waitFor("the sequence's result", `document.getElementById('activation-result').textContent.includes('Hello')`)
	shot("05-sequence-waterfall")

	// The trust panel says "simulated" plainly on sim.
	do("open the trust panel", chromedp.Navigate(base+"/console/#/trust"))
	waitFor("the trust panel", ready("/trust"))
	waitFor("the simulated banner", `document.getElementById('simulated-banner')?.textContent.includes('Simulated')`)
	waitFor("the TEE type", `document.getElementById('trust-tee')?.textContent.includes('sim')`)
	// The runtime that ran hello holds the namespace's keys; the browser
	// verified the KMS's certificate of it.
	waitFor("a verified runtime", `(() => { const v = [...document.querySelectorAll('.runtime-verdict')]; return v.length > 0 && v.every(x => x.textContent === 'certificate verified'); })()`)
	waitFor("the verdict", `document.getElementById('trust-verdict')?.textContent.includes('verified under the KMS key') && document.getElementById('trust-verdict').textContent.includes('simulated')`)
	shot("06-trust")

	// Metrics of the last hour: hello is charted.
	do("open the metrics", chromedp.Navigate(base+"/console/#/metrics"))
	waitFor("the metrics", `[...document.querySelectorAll('#metrics-body tbody tr')].some(r => r.cells[0]?.textContent === 'hello' && r.querySelector('svg rect'))`)
	shot("07-metrics")

	// Sign out forgets the key.
	do("sign out", chromedp.Click(chromedp.ID("signout")))
	waitFor("the sign-in form again", `document.getElementById('apikey') !== null && sessionStorage.getItem('clemmys.auth') === null`)

	cancel()
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Errorf("in the page: %s", p)
	}
}
