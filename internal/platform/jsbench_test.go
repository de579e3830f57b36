package platform_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/platform"
	"github.com/clemmys/clemmys/internal/wasmbuild"
)

// jsHelloSource is the JavaScript hello, examples/hello's twin.
const jsHelloSource = `function main(params) { return {greeting: 'Hello ' + (params.name || 'stranger') + '!'} }`

// BenchmarkInvokeJS compares the JavaScript hello with the Go one through
// the gateway over HTTPS (loopback, one connection, blocking,
// result=true), on a platform whose spare runtimes precompile the engine:
//
//		go test -run XXX -bench InvokeJS -benchtime 20x ./internal/platform/
//
//	  - warm: both loaded and warm, invoked alternately; reports each one's
//	    median and their ratio;
//	  - cold: each iteration creates a namespace and deploys the action
//	    there (not timed), then times its first invocation, sent as soon as
//	    the deploy is answered: the namespace gets a spare runtime
//	    (started, past its hello, engine compiled) and waits for the
//	    deploy's prewarm (key release, code fetch, binding the code to the
//	    engine), then the instance starts (the guest's Go runtime, goja,
//	    the code);
//	  - prewarmed: the same once the deploy's prewarm has loaded the
//	    function: the instance's start and the activation only.
//
// Between cold iterations the pool is let refill (a spare compiles the
// engine, about 2 s of CPU), not timed.
func BenchmarkInvokeJS(b *testing.B) {
	e := startWith(b, b.TempDir(), func(c *platform.Config) {
		engine, err := jsEngineFile()
		if err != nil {
			b.Fatal(err)
		}
		c.JSEngines, c.PrecompileJSEngine = []string{engine}, true
		c.InvocationsPerMinute, c.ConcurrentInvocations = -1, -1
	})
	invoke := func(auth, name string) time.Duration {
		t0 := time.Now()
		var res map[string]any
		if st, _ := e.call(auth, "POST", "/api/v1/namespaces/_/actions/"+name+"?blocking=true&result=true", map[string]any{"name": "bench"}, &res); st != 200 ||
			res["greeting"] != "Hello bench!" {
			b.Fatalf("invoke %s: %d %v", name, st, res)
		}
		return time.Since(t0)
	}
	b.Run("warm", func(b *testing.B) {
		g := e.guest()
		e.deploy(g, "gohello", wasmbuild.MustBuild(b, "examples/hello"), nil)
		deployJS(b, e, g, "jshello", jsHelloSource)
		invoke(g, "gohello")
		invoke(g, "jshello")
		var goLat, jsLat []time.Duration
		for b.Loop() {
			goLat = append(goLat, invoke(g, "gohello"))
			jsLat = append(jsLat, invoke(g, "jshello"))
		}
		gm, jm := median(goLat), median(jsLat)
		b.ReportMetric(float64(gm.Microseconds())/1000, "go-p50-ms")
		b.ReportMetric(float64(jm.Microseconds())/1000, "js-p50-ms")
		b.ReportMetric(float64(jm)/float64(gm), "js/go")
	})
	spares := func() int { return strings.Count(e.logs.String(), "JavaScript engine loaded") }
	ns := 0
	coldRun := func(b *testing.B, waitPrewarm bool) {
		var lat []time.Duration
		for b.Loop() {
			b.StopTimer()
			// A spare with the engine compiled for every namespace so far
			// and this one (the first runtime and the pool's).
			deadline := time.Now().Add(2 * time.Minute)
			for spares() < ns+2 {
				if time.Now().After(deadline) {
					b.Fatalf("the pool did not refill: %d engines compiled for %d namespaces", spares(), ns)
				}
				time.Sleep(20 * time.Millisecond)
			}
			ns++
			name := fmt.Sprintf("jsbench%d", ns)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			u, k, err := e.p.Gateway.CreateNamespace(ctx, name)
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			auth := u + ":" + k
			n := e.p.Invoker.Prewarmed()
			deployJS(b, e, auth, "hello", jsHelloSource)
			if waitPrewarm {
				e.waitPrewarmed(n + 1)
				// and for the spare that replaces the one taken
				for spares() < ns+2 && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
			}
			b.StartTimer()
			lat = append(lat, invoke(auth, "hello"))
		}
		b.ReportMetric(float64(median(lat).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(slicesMax(lat).Microseconds())/1000, "max-ms")
	}
	b.Run("cold", func(b *testing.B) { coldRun(b, false) })
	b.Run("prewarmed", func(b *testing.B) { coldRun(b, true) })
}

func slicesMax(d []time.Duration) time.Duration {
	m := d[0]
	for _, x := range d {
		m = max(m, x)
	}
	return m
}

func deployJS(b *testing.B, e *env, auth, name, src string) {
	b.Helper()
	body := map[string]any{"exec": map[string]any{"kind": "nodejs:default", "code": src}}
	var got map[string]any
	if st, _ := e.call(auth, "PUT", "/api/v1/namespaces/_/actions/"+name+"?overwrite=true", body, &got); st != http.StatusOK {
		b.Fatalf("deploy %s: %d %v", name, st, got)
	}
}
