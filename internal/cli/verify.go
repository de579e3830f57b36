package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/clemmys/clemmys/client"
)

// `clemmys attest` and `clemmys activation verify` (docs/verify.md): the
// owner's checks of the platform's evidence and of activation records,
// done locally by package client.

const attestUsage = `Usage: clemmys attest [--expect FILE] [--apihost URL --auth KEY -i] [--json]

Fetches GET /api/v1/clemmys/attestation with a fresh nonce, verifies the
KMS's and the gateway's evidence and the KMS's certificates of the runtimes
that hold your namespace's keys, compares them with what FILE pins (JSON:
tee, simRoot, kmsSignKey, kmsMeasurements, gatewayMeasurements,
runtimeMeasurements, minSecurityVersion, allowDebug, collateralDir; see
docs/verify.md), and prints a short report. The exit status is 1 on any
mismatch.
`

// maxExpectFile bounds --expect.
const maxExpectFile = 64 << 10

func cmdAttest(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprint(stdout, attestUsage)
		return 0
	}
	c := newWskCmd("attest", stdout, stderr)
	expect := c.fs.String("expect", "", "JSON file of what you pin (docs/verify.md)")
	if !c.parse(args, "[--expect FILE]", 0, 0) {
		return c.exit
	}
	rep, _, code := c.attest(*expect)
	if rep == nil {
		return code
	}
	if *c.jsonOut {
		c.printJSON(rep)
	} else {
		printAttestation(c.stdout, rep)
	}
	if !rep.OK() {
		return 1
	}
	return 0
}

// attest fetches and verifies the attestation; on failure it has printed
// the error and returns a nil report and the exit status.
func (c *wskCmd) attest(expectFile string) (*client.AttestationReport, client.Expect, int) {
	var exp client.Expect
	if expectFile != "" {
		b, err := readBounded(expectFile, maxExpectFile)
		if err == nil {
			err = json.Unmarshal(b, &exp)
		}
		if err != nil {
			fmt.Fprintf(c.stderr, "error: --expect %s: %v (a JSON object, see docs/verify.md)\n", expectFile, err)
			return nil, exp, 2
		}
	}
	nonce := client.NewNonce()
	a, tlsKey, err := client.FetchAttestation(c.ctx, c.c.http, c.c.cfg.Host, c.c.cfg.Auth, nonce)
	if err != nil {
		return nil, exp, c.fail("fetch the attestation", err)
	}
	return client.VerifyAttestation(a, nonce, tlsKey, exp), exp, 0
}

// trustedAttestation is attest for a command that goes on only if the
// attestation verified: otherwise it prints the report and why it stops.
func (c *wskCmd) trustedAttestation(expectFile, consequence string) (*client.AttestationReport, client.Expect, int) {
	att, exp, code := c.attest(expectFile)
	if att == nil {
		return nil, exp, code
	}
	if !att.OK() {
		printAttestation(c.stderr, att)
		fmt.Fprintf(c.stderr, "error: the platform's attestation does not verify: %s\n", consequence)
		return nil, exp, 1
	}
	return att, exp, 0
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return b, nil
}

func printAttestation(w io.Writer, r *client.AttestationReport) {
	tee := r.TEE
	if r.Simulated {
		tee += " (SIMULATED: no hardware protection)"
	}
	fmt.Fprintf(w, "TEE:       %s\n", tee)
	if r.SimRoot != "" {
		fmt.Fprintf(w, "sim root:  %s (pin it as simRoot)\n", r.SimRoot)
	}
	if r.KMS != nil {
		fmt.Fprintf(w, "KMS:       %s measurement %s svn %d, signing key %s\n", r.KMS.Platform, r.KMS.Measurement, r.KMS.SecurityVersion, r.KMSSignKey)
	}
	if r.Gateway != nil {
		fmt.Fprintf(w, "gateway:   %s measurement %s svn %d (bound to this TLS session and nonce)\n", r.Gateway.Platform, r.Gateway.Measurement, r.Gateway.SecurityVersion)
	}
	fmt.Fprintf(w, "runtimes holding your keys: %d\n", len(r.Runtimes))
	for _, rt := range r.Runtimes {
		fmt.Fprintf(w, "  %s  %s measurement %s svn %d, %d functions, last release %s\n", rt.RuntimeID[:min(16, len(rt.RuntimeID))], rt.Platform,
			rt.Measurement, rt.SecurityVersion, rt.Releases, time.UnixMilli(rt.LastRelease).UTC().Format(time.RFC3339))
	}
	if len(r.Policy) > 0 {
		fmt.Fprintf(w, "policy:    %s\n", strings.TrimSpace(string(r.Policy)))
	}
	for _, m := range r.Warnings {
		fmt.Fprintf(w, "warning:   %s\n", m)
	}
	for _, m := range r.Problems {
		fmt.Fprintf(w, "MISMATCH:  %s\n", m)
	}
	switch {
	case !r.OK():
		fmt.Fprintln(w, "verdict:   FAILED")
	case r.Simulated:
		fmt.Fprintln(w, "verdict:   verified (simulated evidence)")
	default:
		fmt.Fprintln(w, "verdict:   verified")
	}
}

// activationVerify checks an activation record's receipts (and, for a
// sequence, each component's record) against the verified KMS key.
func activationVerify(c *wskCmd, args []string) int {
	expect := c.fs.String("expect", "", "JSON file of what you pin (as for clemmys attest)")
	if !c.parse(args, "ID [--expect FILE]", 1, 1) {
		return c.exit
	}
	att, exp, code := c.trustedAttestation(*expect, "no receipt can be trusted")
	if att == nil {
		return code
	}
	ok := true
	var reports []*client.ActivationReport
	ids := []string{c.args[0]}
	for i := 0; i < len(ids) && i <= client.MaxReceipts; i++ {
		var act client.Activation
		if err := c.c.do(c.ctx, "GET", kindActivation.path(ids[i]), nil, &act); err != nil {
			return c.fail(fmt.Sprintf("get activation '%s'", ids[i]), err)
		}
		rep := client.VerifyActivation(&act, att.KMSKey(), exp.RuntimeMeasurements)
		reports = append(reports, rep)
		ok = ok && rep.OK()
		if i == 0 && act.IsSequence() && rep.OK() {
			ids = append(ids, act.Logs...) // the components
		}
	}
	if *c.jsonOut {
		c.printJSON(reports)
	} else {
		for _, rep := range reports {
			printActivationReport(c.stdout, rep, att.Simulated)
		}
	}
	if !ok {
		return 1
	}
	return 0
}

func printActivationReport(w io.Writer, r *client.ActivationReport, simulated bool) {
	fmt.Fprintf(w, "activation %s\n", r.ActivationID)
	for _, s := range r.Steps {
		fmt.Fprintf(w, "  step %d/%d  /%s/%s  %s  code %s…  %s runtime %s… measurement %s…  %dms\n", s.Step+1, s.Steps, s.Namespace, s.Action,
			s.Status, s.CodeDigest[:min(16, len(s.CodeDigest))], s.Runtime.Platform, s.RuntimeID[:min(16, len(s.RuntimeID))],
			s.Runtime.Measurement[:min(16, len(s.Runtime.Measurement))], max(s.End-s.Start, 0))
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  MISMATCH: %s\n", p)
	}
	switch {
	case !r.OK():
		fmt.Fprintln(w, "  verdict: FAILED")
	case simulated:
		fmt.Fprintln(w, "  verdict: verified: signed by the runtimes the KMS certified (simulated evidence)")
	default:
		fmt.Fprintln(w, "  verdict: verified: signed by the runtimes the KMS certified")
	}
}

// invokeSealed runs `action invoke --seal`: it verifies the attestation,
// seals the parameters here, waits for the result and opens and verifies
// it (package client).
func (c *wskCmd) invokeSealed(name string, params map[string]any, resultOnly bool, expectFile string) int {
	att, exp, code := c.trustedAttestation(expectFile, "nothing was sealed")
	if att == nil {
		return code
	}
	if params == nil {
		params = map[string]any{}
	}
	body, err := json.Marshal(params)
	if err != nil {
		return c.fail("encode the parameters", err)
	}
	si := &client.SealedInvoker{HTTP: c.c.http, APIHost: c.c.cfg.Host, Auth: c.c.cfg.Auth, KMSKey: att.KMSKey(), Pinned: exp.RuntimeMeasurements}
	res, err := si.Invoke(c.ctx, name, body, true)
	if err == nil && res.Result == nil {
		// Still running after the gateway's blocking wait.
		res, err = si.Wait(c.ctx, res)
	}
	if err != nil {
		return c.fail(fmt.Sprintf("invoke action '%s' sealed", name), err)
	}
	if resultOnly || *c.jsonOut {
		c.printJSON(res.Result)
	} else {
		c.ok("invoked %s sealed end to end with id %s: %s, verified (%d step(s) signed by runtimes the KMS certified%s)",
			qualify(name), res.ActivationID, res.Status, len(res.Report.Steps), map[bool]string{true: "; simulated evidence", false: ""}[att.Simulated])
		c.printJSON(res.Result)
		if res.Logs != "" {
			fmt.Fprint(c.stdout, res.Logs)
			if !strings.HasSuffix(res.Logs, "\n") {
				fmt.Fprintln(c.stdout)
			}
		}
	}
	if res.Status != "success" {
		return 1
	}
	return 0
}
