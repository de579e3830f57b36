package platform_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clemmys/clemmys/internal/cli"
	"github.com/clemmys/clemmys/internal/platform"
	"github.com/clemmys/clemmys/internal/tee/snp"
	"github.com/clemmys/clemmys/internal/tee/tdx"
)

// On a machine without TEE, asking for real hardware fails closed, before
// anything listens; sim is the default and says so.
func TestRealTEEFailsClosedWithoutHardware(t *testing.T) {
	if snp.Available() || tdx.Available() {
		t.Skip("this machine is a confidential VM")
	}
	for _, name := range []string{"sev-snp", "tdx"} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		p, err := platform.Start(ctx, platform.Config{DataDir: t.TempDir(), Addr: "127.0.0.1:0", EnclavePath: enclavePath, TEE: name, SkipCatalog: true})
		cancel()
		if err == nil {
			p.Stop()
			t.Fatalf("--tee %s started on a machine without it", name)
		}
		if !errors.Is(err, platform.ErrNoTEE) || !strings.Contains(err.Error(), "without --tee for the simulated TEE") {
			t.Fatalf("--tee %s: %v", name, err)
		}
	}
	for _, name := range []string{"snp", "tdx"} {
		var out, errs bytes.Buffer
		code := cli.Run([]string{"up", "--tee", name, "--data-dir", t.TempDir(), "--addr", "127.0.0.1:0", "--enclave", enclavePath}, &out, &errs)
		if code != 1 || !strings.Contains(errs.String(), "is not available on this machine") || strings.Contains(out.String(), "SIMULATED") {
			t.Fatalf("clemmys up --tee %s: exit %d\nstdout %s\nstderr %s", name, code, out.String(), errs.String())
		}
	}
}

func TestAPIInfoSaysSimulated(t *testing.T) {
	e := start(t, t.TempDir())
	var info map[string]any
	if st, _ := e.call("", "GET", "/api/v1", nil, &info); st != 200 || info["tee"] != "sim" || !strings.Contains(info["warning"].(string), "SIMULATED TEE") {
		t.Fatalf("/api/v1: %d %v", st, info)
	}
	if e.p.TEE != "sim" {
		t.Fatalf("platform TEE %q", e.p.TEE)
	}
}
