package cli

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/go-sev-guest/kds"

	"github.com/clemmys/clemmys/internal/collateral"
	"github.com/clemmys/clemmys/internal/platform"
)

const collateralUsage = `Usage:
  clemmys collateral fetch [--data-dir DIR | --dir DIR] [--snp LINES] [--tdx]
          [--fmspc HEX,...] [--vcek LINE:CHIPID:BL.TEE.SNP.UCODE ...]
      download AMD's and Intel's attestation collateral into the KMS's
      collateral directory (DATA_DIR/collateral), where the network allows.
      With no --snp, --tdx, --fmspc or --vcek: the CRLs of every AMD product
      line and Intel's QE identity and CRLs. Intel's TCB info is per
      platform model: give each FMSPC (a KMS refusal for missing TCB info
      names it). A VCEK is needed only when the host does not put it in the
      extended report. --amd-kds, --intel-pcs and --intel-root-crl point at
      mirrors.
  clemmys collateral status [--data-dir DIR | --dir DIR] [--warn 72h]
      list the collateral files, what each is and until when it is valid;
      exit status 1 when one is stale, unreadable or misplaced, so a cron
      job can tell before the KMS starts refusing key releases.

Fetched files are checked for what they are (a CRL, a certificate, a
signed PCS document), never trusted for being fetched: the KMS verifies
every signature, chain and date at each key release. See
docs/operations.md, "Collateral".
`

func cmdCollateral(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, collateralUsage)
		return 0
	}
	verb := args[0]
	fs := flag.NewFlagSet("clemmys collateral "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", defaultDataDir(), "the KMS's data directory (env CLEMMYS_DATA_DIR); collateral goes to DATA_DIR/collateral")
	dir := fs.String("dir", "", "the collateral directory itself (overrides --data-dir)")
	fail := func(err error) int {
		fmt.Fprintf(stderr, "clemmys collateral %s: %v\n", verb, err)
		return 1
	}
	collDir := func() string {
		if *dir != "" {
			return *dir
		}
		return filepath.Join(*dataDir, platform.CollateralDir)
	}
	switch verb {
	case "fetch":
		snpLines := fs.String("snp", "", "AMD product lines whose CRLs to fetch, comma-separated: "+strings.Join(collateral.SNPProductLines, ","))
		withTDX := fs.Bool("tdx", false, "fetch Intel's QE identity, Root CA CRL and PCK CA CRLs")
		fmspcs := fs.String("fmspc", "", "fetch Intel's TDX TCB info of these FMSPCs (hex, comma-separated); implies --tdx")
		var vceks listFlag
		fs.Var(&vceks, "vcek", "fetch a VCEK: LINE:CHIPID:BL.TEE.SNP.UCODE (Milan, Genoa; CHIP_ID in hex; repeatable)")
		amd := fs.String("amd-kds", collateral.AMDKDS, "AMD Key Distribution Service base URL")
		intel := fs.String("intel-pcs", collateral.IntelPCS, "Intel Provisioning Certification Service base URL")
		rootCRL := fs.String("intel-root-crl", collateral.IntelRootCRLAt, "URL of the Intel SGX Root CA CRL")
		timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		req := collateral.Request{TDX: *withTDX, FMSPCs: splitList(*fmspcs)}
		if *snpLines != "" {
			req.SNP = splitList(*snpLines)
		}
		for _, s := range vceks {
			v, err := parseVCEK(s)
			if err != nil {
				fmt.Fprintf(stderr, "clemmys collateral fetch: --vcek %q: %v\n", s, err)
				return 2
			}
			req.VCEKs = append(req.VCEKs, v)
		}
		if len(req.SNP) == 0 && !req.TDX && len(req.FMSPCs) == 0 && len(req.VCEKs) == 0 {
			req.SNP, req.TDX = collateral.SNPProductLines, true
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		f := &collateral.Fetcher{Dir: collDir(), AMD: *amd, Intel: *intel, IntelRootCRL: *rootCRL}
		got, err := f.Fetch(ctx, req)
		for _, g := range got {
			fmt.Fprintf(stdout, "wrote %s  (%s)\n", filepath.Join(f.Dir, g.Path), g.URL)
		}
		if err != nil {
			return fail(fmt.Errorf("%w\n(files written before the failure are complete; run it again where %s and %s are reachable, or copy the files in by hand: docs/operations.md)", err, *amd, *intel))
		}
		if req.TDX && len(req.FMSPCs) == 0 {
			fmt.Fprintln(stdout, "no TCB info fetched: add --fmspc with your TDX hosts' FMSPCs (a KMS refusal for missing TCB info names the FMSPC)")
		}
		fmt.Fprintln(stdout, "run 'clemmys collateral status' to see until when each file is valid")
		return 0
	case "status":
		warn := fs.Duration("warn", 72*time.Hour, "mark files that expire within this long")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		d := collDir()
		if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
			return fail(fmt.Errorf("no collateral directory at %s: run 'clemmys collateral fetch' (or --dir DIR)", d))
		}
		files, err := collateral.Status(d, time.Now())
		if err != nil {
			return fail(err)
		}
		if len(files) == 0 {
			fmt.Fprintf(stdout, "%s is empty: the KMS refuses every SEV-SNP and TDX key release (collateral-missing); run 'clemmys collateral fetch'\n", d)
			return 1
		}
		bad := 0
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "FILE\tWHAT\tVALID UNTIL\tSTATE")
		for _, f := range files {
			state, until := "ok", "-"
			switch {
			case f.Err != nil:
				state, bad = "BAD: "+f.Err.Error(), bad+1
			case f.Stale:
				state, bad = fmt.Sprintf("STALE (valid %s to %s): fetch it again", f.From.UTC().Format(time.DateOnly), f.To.UTC().Format(time.DateOnly)), bad+1
			case f.ExpiresIn < *warn:
				state = "expires in " + f.ExpiresIn.Round(time.Minute).String() + ": fetch it again"
			}
			if f.Err == nil {
				until = f.To.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Path, f.Kind, until, state)
		}
		tw.Flush()
		if bad > 0 {
			fmt.Fprintf(stderr, "clemmys collateral status: %d file(s) the KMS cannot use\n", bad)
			return 1
		}
		return 0
	default:
		fmt.Fprintf(stderr, "clemmys collateral: unknown verb %q\n\n%s", verb, collateralUsage)
		return 2
	}
}

// parseVCEK parses LINE:CHIPID:BL.TEE.SNP.UCODE.
func parseVCEK(s string) (collateral.VCEK, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return collateral.VCEK{}, errors.New("want LINE:CHIPID:BL.TEE.SNP.UCODE, e.g. Milan:<128 hex digits>:3.0.8.115")
	}
	chip, err := hex.DecodeString(parts[1])
	if err != nil {
		return collateral.VCEK{}, fmt.Errorf("CHIP_ID: %w", err)
	}
	svns := strings.Split(parts[2], ".")
	if len(svns) != 4 {
		return collateral.VCEK{}, errors.New("TCB: want BL.TEE.SNP.UCODE, four numbers 0-255")
	}
	var n [4]uint8
	for i, s := range svns {
		v, err := strconv.ParseUint(s, 10, 8)
		if err != nil {
			return collateral.VCEK{}, fmt.Errorf("TCB: %q is not a number 0-255", s)
		}
		n[i] = uint8(v)
	}
	tcb, err := kds.ComposeTCBParts(kds.TCBParts{BlSpl: n[0], TeeSpl: n[1], SnpSpl: n[2], UcodeSpl: n[3]})
	if err != nil {
		return collateral.VCEK{}, fmt.Errorf("TCB: %w", err)
	}
	return collateral.VCEK{ProductLine: parts[0], ChipID: chip, TCB: tcb}, nil
}
