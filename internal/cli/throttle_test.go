package cli

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/clemmys/clemmys/internal/gateway"
)

// TestThrottleFlags: `clemmys up` (and every command running a gateway)
// can run without throttles, for load tests: 0 turns each off.
func TestThrottleFlags(t *testing.T) {
	tests := []struct {
		args                      string
		invokes, concurrent, fire int
		bad                       bool
	}{
		{"", gateway.DefaultInvocationsPerMinute, gateway.DefaultConcurrentInvocations, gateway.DefaultFiresPerMinute, false},
		{"--invocations-per-minute 0 --concurrent-invocations 0 --fires-per-minute 0", -1, -1, -1, false},
		{"--invocations-per-minute 5000 --concurrent-invocations 7", 5000, 7, gateway.DefaultFiresPerMinute, false},
		{"--fires-per-minute -1", 0, 0, 0, true},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		th := throttleFlags(fs)
		if err := fs.Parse(strings.Fields(tt.args)); err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		if err := th.check(); (err != nil) != tt.bad {
			t.Errorf("%q: check = %v", tt.args, err)
			continue
		}
		if tt.bad {
			continue
		}
		if got := [3]int{th.config(th.invokes), th.config(th.concurrent), th.config(th.fires)}; got != [3]int{tt.invokes, tt.concurrent, tt.fire} {
			t.Errorf("%q: config %v", tt.args, got)
		}
	}
	var out strings.Builder
	Run([]string{"up", "-h"}, io.Discard, &out)
	for _, f := range []string{"-invocations-per-minute", "-concurrent-invocations", "-fires-per-minute"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("clemmys up -h does not show %s", f)
		}
	}
}
