package cli

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/clemmys/clemmys/internal/platform"
	"github.com/clemmys/clemmys/internal/tee/sim"
)

const policyUsage = `Usage:
  clemmys policy get                 show the namespace's key-release policy
  clemmys policy allow [RULE...]     add runtime measurements or rules; with none,
                                     the measurement of the local enclave runtime (sim)
  clemmys policy remove RULE...      remove measurements or rules
  clemmys policy set RULE...         replace the sim measurements, or the rules of
                                     each platform named

A RULE is a sim runtime measurement (hex), or a typed rule of real hardware,
the platform prefix applying to the KEY=VALUE arguments after it:

  snp:measurement=HEX(48)        accepted launch MEASUREMENT (list)
      min-tcb=BL.TEE.SNP.UCODE   minimum REPORTED_TCB, e.g. 3.0.8.115
      smt=allow|forbid           guests that allow SMT (default forbid)
      migration-agent=allow|forbid
      host-data=HEX(32)          HOST_DATA must equal this
      id-key-digest=HEX(48)      ID_KEY_DIGEST must be one of these (list)
      min-guest-svn=N
  tdx:mrtd=HEX(48)               accepted MRTD (list)
      rtmr0..rtmr3=HEX(48)       RTMRn must be one of these (list)
      min-tcb-svn=HEX(16)        component-wise minimum TEE_TCB_SVN
      tcb-status=STATUS          also accept Intel's TCB status STATUS (list;
                                 UpToDate only by default)
  signer:key=HEX(32)             trust runtime releases signed by this ed25519
      min-version=N              key, from release version N on (list; see
                                 clemmys release)

Debug guests and TDs are always refused. For example:

  clemmys policy allow snp:measurement=b07a… min-tcb=3.0.8.115
  clemmys policy allow tdx:mrtd=… rtmr1=… rtmr2=… tcb-status=SWHardeningNeeded

Upgrading the runtime changes its measurement: allow the new one before (or
right after) the upgrade. See docs/operations.md for how to compute the
values (clemmys measure --tee snp|tdx).
`

// policyJSON is the gateway's policy document.
type policyJSON struct {
	Measurements       []string     `json:"measurements"`
	AllowDebug         bool         `json:"allowDebug"`
	MinSecurityVersion uint32       `json:"minSecurityVersion"`
	SNP                *snpJSON     `json:"snp,omitempty"`
	TDX                *tdxJSON     `json:"tdx,omitempty"`
	Signers            []signerJSON `json:"signers,omitempty"`
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
	cfg.logOut = stderr
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

	rules, err := parseRules(fs.Args())
	if err != nil {
		return fail(err)
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
		if len(rules) == 0 {
			enc, how, err := runtimeToMeasure(ctx, *enclavePath, *dataDir)
			if err != nil {
				return fail(err)
			}
			m, err := sim.MeasureFile(enc)
			if err != nil {
				return fail(err)
			}
			fmt.Fprintf(stdout, "measured %s (%s): %s\n", enc, how, hex.EncodeToString(m))
			rules = []rule{{value: hex.EncodeToString(m)}}
		}
		for _, r := range rules {
			applyRule(&next, r, false)
		}
	case "remove":
		if len(rules) == 0 {
			return fail(fmt.Errorf("name the measurements or rules to remove"))
		}
		for _, r := range rules {
			applyRule(&next, r, true)
		}
	case "set":
		if len(rules) == 0 {
			return fail(fmt.Errorf("name at least one measurement or rule"))
		}
		for _, r := range rules {
			switch r.platform {
			case "":
				next.Measurements = nil
			case "snp":
				next.SNP = nil
			case "tdx":
				next.TDX = nil
			}
		}
		for _, r := range rules {
			applyRule(&next, r, false)
		}
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

// runtimeToMeasure is the runtime binary `policy allow` measures without
// arguments: --enclave if given, else the one the platform running from
// dataDir starts (platform.RuntimeInfoFile), else the one `clemmys up`
// would find.
func runtimeToMeasure(ctx context.Context, flagPath, dataDir string) (string, string, error) {
	if flagPath == "" {
		if ri, err := platform.ReadRuntimeInfo(dataDir); err == nil {
			if ri.TEE != "" && ri.TEE != sim.Platform {
				return "", "", fmt.Errorf("the platform runs on %s: a runtime's measurement there is its confidential VM image's, not its binary's; allow it with a %s rule (clemmys measure --tee %s)", ri.TEE, ri.TEE, ri.TEE)
			}
			if _, err := os.Stat(ri.Path); err == nil {
				return ri.Path, "the runtime binary the platform at " + ri.APIHost + " starts", nil
			}
		}
	}
	enc, how, err := findEnclave(ctx, flagPath, dataDir, slog.New(slog.NewTextHandler(io.Discard, nil)), false)
	return enc, how, err
}
