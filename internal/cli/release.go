package cli

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/clemmys/clemmys/internal/bus"
	"github.com/clemmys/clemmys/internal/tee/sim"
	"github.com/clemmys/clemmys/internal/wire"
)

const releaseUsage = `Usage:
  clemmys release keygen --key FILE
      create a release signing key (ed25519 seed, mode 0600) and print its
      public key, which policies trust with signer:key=HEX
  clemmys release sign --key FILE --version N [--enclave PATH]
          [--measurement [PLATFORM:]HEX ...] [--out FILE]
      sign a release manifest: the sim measurement of the runtime binary at
      PATH (if given) and each --measurement (platform sim, sev-snp or tdx;
      list the previous release's too, so runtimes still running it keep
      working during the upgrade). It is written to PATH.manifest (or
      --out), where the invoker finds it.

A policy that trusts the key (clemmys policy allow signer:key=HEX
min-version=N, or clemmys up --release-key HEX) accepts every runtime a
manifest of version >= N lists, on top of exact measurements: upgrades
signed by the key need no owner action. See docs/operations.md.
`

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func cmdRelease(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, releaseUsage)
		return 0
	}
	verb := args[0]
	fs := flag.NewFlagSet("clemmys release "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyFile := fs.String("key", "", "release signing key file")
	version := fs.Uint("version", 0, "release (security) version")
	enclave := fs.String("enclave", "", "runtime binary to list (sim measurement)")
	out := fs.String("out", "", "manifest file (default: --enclave PATH + .manifest)")
	note := fs.String("note", "", "free text, e.g. the release's name")
	var ms listFlag
	fs.Var(&ms, "measurement", "[PLATFORM:]HEX measurement to list (repeatable; platform sim by default)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "clemmys release %s: %v\n", verb, err)
		return 1
	}
	if *keyFile == "" {
		return fail(errors.New("--key is required"))
	}
	switch verb {
	case "keygen":
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return fail(err)
		}
		f, err := os.OpenFile(*keyFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fail(err)
		}
		_, err = f.Write(priv.Seed())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "release signing key written to %s\npublic key: %s\n", *keyFile, hex.EncodeToString(pub))
		return 0
	case "sign":
		seed, err := os.ReadFile(*keyFile)
		if err != nil {
			return fail(err)
		}
		if len(seed) != ed25519.SeedSize {
			return fail(fmt.Errorf("%s is not a %d-byte ed25519 seed", *keyFile, ed25519.SeedSize))
		}
		key := ed25519.NewKeyFromSeed(seed)
		rm := wire.ReleaseManifest{Version: uint32(*version), Note: *note}
		if *enclave != "" {
			m, err := sim.MeasureFile(*enclave)
			if err != nil {
				return fail(err)
			}
			rm.Runtimes = append(rm.Runtimes, wire.ManifestEntry{Platform: sim.Platform, Measurement: m})
		}
		for _, s := range ms {
			platform, h := sim.Platform, s
			if p, rest, ok := strings.Cut(s, ":"); ok {
				platform, h = p, rest
			}
			if platform == "snp" {
				platform = "sev-snp"
			}
			if platform != sim.Platform && platform != "sev-snp" && platform != "tdx" {
				return fail(fmt.Errorf("--measurement %q: platform must be sim, sev-snp or tdx", s))
			}
			b, err := hex.DecodeString(h)
			if err != nil || len(b) < 32 || len(b) > 64 {
				return fail(fmt.Errorf("--measurement %q is not 32 to 64 bytes of hex", s))
			}
			rm.Runtimes = append(rm.Runtimes, wire.ManifestEntry{Platform: platform, Measurement: b})
		}
		if len(rm.Runtimes) == 0 || len(rm.Runtimes) > wire.MaxManifestEntries {
			return fail(fmt.Errorf("a manifest lists 1 to %d runtimes: give --enclave or --measurement", wire.MaxManifestEntries))
		}
		body, err := bus.Marshal(&rm)
		if err != nil {
			return fail(err)
		}
		signed, err := bus.Marshal(&wire.SignedManifest{Manifest: body, Sig: ed25519.Sign(key, wire.ManifestMessage(body))})
		if err != nil {
			return fail(err)
		}
		path := *out
		if path == "" {
			if *enclave == "" {
				return fail(errors.New("--out is required without --enclave"))
			}
			path = *enclave + ".manifest"
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, signed, 0o644); err != nil {
			return fail(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "release version %d manifest (%d runtimes) signed by %s written to %s\n",
			rm.Version, len(rm.Runtimes), hex.EncodeToString(key.Public().(ed25519.PublicKey)), path)
		return 0
	}
	fmt.Fprintf(stderr, "clemmys release: unknown verb %q\n\n%s", verb, releaseUsage)
	return 2
}
