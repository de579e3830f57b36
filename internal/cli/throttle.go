package cli

import (
	"errors"
	"flag"

	"github.com/clemmys/clemmys/internal/gateway"
)

// throttles are the gateway's per-namespace throttles as flags, shared by
// the commands that run a gateway. 0 turns one off.
type throttles struct {
	invokes, concurrent, fires *int
}

func throttleFlags(fs *flag.FlagSet) *throttles {
	return &throttles{
		invokes: fs.Int("invocations-per-minute", gateway.DefaultInvocationsPerMinute,
			"invocations a namespace may start per minute on this gateway, refused ones included (0: no limit)"),
		concurrent: fs.Int("concurrent-invocations", gateway.DefaultConcurrentInvocations,
			"invocations a namespace may have in flight on this gateway (0: no limit)"),
		fires: fs.Int("fires-per-minute", gateway.DefaultFiresPerMinute,
			"trigger fires a namespace may make per minute on this gateway (0: no limit)"),
	}
}

func (t *throttles) check() error {
	if *t.invokes < 0 || *t.concurrent < 0 || *t.fires < 0 {
		return errors.New("--invocations-per-minute, --concurrent-invocations and --fires-per-minute take a count ≥ 0 (0: no limit)")
	}
	return nil
}

// config maps a flag value to gateway.Config's convention (< 0: no limit).
func (t *throttles) config(v *int) int {
	if *v == 0 {
		return -1
	}
	return *v
}
