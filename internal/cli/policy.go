package cli

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/clemmys/clemmys/internal/tee/sim"
)

const policyUsage = `Usage:
  clemmys policy get                    show the namespace's key-release policy
  clemmys policy allow [MEASUREMENT...] add runtime measurements (hex); with none,
                                        the measurement of the local enclave runtime
  clemmys policy remove MEASUREMENT...  remove runtime measurements
  clemmys policy set MEASUREMENT...     replace the list of measurements

The policy names the enclave runtime measurements that may receive the keys
of the namespace's functions. Upgrading the runtime changes its measurement:
allow the new one before (or right after) the upgrade. See docs/operations.md.
`

// policyJSON is the gateway's policy document.
type policyJSON struct {
	Measurements       []string `json:"measurements"`
	AllowDebug         bool     `json:"allowDebug"`
	MinSecurityVersion uint32   `json:"minSecurityVersion"`
}

func cmdPolicy(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, policyUsage)
		return 0
	}
	verb := args[0]
	fs := flag.NewFlagSet("clemmys policy "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, dataDir := clientFlags(fs)
	enclavePath := fs.String("enclave", "", "enclave runtime whose measurement `allow` adds when given none")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "clemmys policy %s: %v\n", verb, err)
		return 1
	}
	if err := cfg.resolve(*dataDir); err != nil {
		return fail(err)
	}
	c, err := newAPIClient(cfg)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var measurements []string
	for _, m := range fs.Args() {
		m = strings.ToLower(strings.TrimSpace(m))
		if b, err := hex.DecodeString(m); err != nil || len(b) < 32 || len(b) > 64 {
			return fail(fmt.Errorf("%q is not a measurement (32 to 64 bytes in hex)", m))
		}
		measurements = append(measurements, m)
	}
	var cur policyJSON
	if err := c.do(ctx, "GET", "/api/v1/namespaces/_/policy", nil, &cur); err != nil {
		return fail(err)
	}
	next := cur
	switch verb {
	case "get":
		return printPolicy(stdout, &cur)
	case "allow":
		if len(measurements) == 0 {
			enc, _, err := findEnclave(ctx, *enclavePath, *dataDir, slog.New(slog.NewTextHandler(io.Discard, nil)), false)
			if err != nil {
				return fail(err)
			}
			m, err := sim.MeasureFile(enc)
			if err != nil {
				return fail(err)
			}
			measurements = []string{hex.EncodeToString(m)}
		}
		for _, m := range measurements {
			if !slices.Contains(next.Measurements, m) {
				next.Measurements = append(next.Measurements, m)
			}
		}
	case "remove":
		if len(measurements) == 0 {
			return fail(fmt.Errorf("name the measurements to remove"))
		}
		next.Measurements = slices.DeleteFunc(slices.Clone(cur.Measurements), func(m string) bool { return slices.Contains(measurements, m) })
	case "set":
		if len(measurements) == 0 {
			return fail(fmt.Errorf("name at least one measurement"))
		}
		next.Measurements = measurements
	default:
		fmt.Fprintf(stderr, "clemmys policy: unknown verb %q\n\n%s", verb, policyUsage)
		return 2
	}
	var stored policyJSON
	if err := c.do(ctx, "PUT", "/api/v1/namespaces/_/policy", &next, &stored); err != nil {
		return fail(err)
	}
	return printPolicy(stdout, &stored)
}

func printPolicy(w io.Writer, p *policyJSON) int {
	fmt.Fprintln(w, "accepted enclave runtime measurements:")
	for _, m := range p.Measurements {
		fmt.Fprintln(w, "  "+m)
	}
	fmt.Fprintf(w, "debug enclaves allowed: %v\nminimum security version: %d\n", p.AllowDebug, p.MinSecurityVersion)
	return 0
}
