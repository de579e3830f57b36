package platform_test

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/clemmys/clemmys/internal/platform"
	"github.com/clemmys/clemmys/internal/wasmbuild"
)

var soakPlatform = flag.Bool("soak", false, "TestRetentionSoakPlatform: 100 000 invocations")

// TestRetentionSoakPlatform invokes an action many times (blocking, 8 at
// a time, through the gateway) in a namespace whose retention the operator set to
// 200 records with the admin API, sweeping as it goes, and checks that the
// store stays bounded: 600 invocations, or 100 000 with -soak.
func TestRetentionSoakPlatform(t *testing.T) {
	if testing.Short() {
		t.Skip("soak (-short)")
	}
	total, keep := 600, 200
	if *soakPlatform {
		total = 100_000
	}
	e := startWith(t, t.TempDir(), func(c *platform.Config) {
		c.InvocationsPerMinute, c.ConcurrentInvocations = -1, -1
	})
	g := e.guest()
	e.deploy(g, "echo", wasmbuild.MustBuild(t, "internal/testfuncs/echo"), nil)
	admin, err := os.ReadFile(e.p.AdminCredentialPath())
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := e.call(strings.TrimSpace(string(admin)), "PUT", "/admin/v1/namespaces/guest/limits", map[string]any{"activationRetentionCount": keep}, nil); st != 200 {
		t.Fatalf("set retention: %d", st)
	}
	nc, err := e.p.Connect("soak")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	size := func(bucket string) (uint64, uint64) {
		s, err := js.Stream(context.Background(), "KV_"+bucket)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs, info.State.Bytes
	}
	const batch, conns = 200, 8
	var peak uint64
	for done := 0; done < total; done += batch {
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := c; i < batch; i += conns {
					var res map[string]any
					if st, _ := e.call(g, "POST", "/api/v1/namespaces/_/actions/echo?blocking=true&result=true", map[string]any{"i": done + i}, &res); st != http.StatusOK {
						errs <- fmt.Errorf("invoke: %d %v", st, res)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if _, err := e.p.Controller.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		msgs, _ := size("clemmys_activations")
		peak = max(peak, msgs)
	}
	// The last activations finish; a final sweep leaves exactly keep.
	waitFor(t, func() bool {
		var c map[string]float64
		e.call(g, "GET", "/api/v1/namespaces/_/activations?count=true", nil, &c)
		recs, _ := size("clemmys_records")
		if _, err := e.p.Controller.Sweep(context.Background()); err != nil {
			t.Fatal(err)
		}
		// (A blocking activation done within wire.DeferReserveMs has its
		// complete record as its first and none in clemmys_records.)
		return c["activations"] == float64(keep) && recs <= uint64(keep)
	})
	acts, actBytes := size("clemmys_activations")
	recs, recBytes := size("clemmys_records")
	t.Logf("%d invocations; the store holds %d first records (%d bytes) and %d complete records (%d bytes); at most %d first records after a sweep",
		total, acts, actBytes, recs, recBytes, peak)
	if acts != uint64(keep) || recs > uint64(keep) || peak > uint64(keep+batch) {
		t.Fatalf("activations bucket: %d messages (peak %d), want %d", acts, peak, keep)
	}
	var list []map[string]any
	if st, _ := e.call(g, "GET", "/api/v1/namespaces/_/activations?limit=200", nil, &list); st != 200 || len(list) != keep {
		t.Fatalf("listing: %d, %d records", st, len(list))
	}
}
