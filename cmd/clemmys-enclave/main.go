// Command clemmys-enclave is the enclave runtime: the trusted computing base
// of clemmys. An invoker starts it as a child process and talks to it over
// stdin/stdout (package ipc); its own diagnostics go to stderr.
//
// --tee chooses the TEE: auto (the default) uses the confidential-computing
// hardware this machine is (AMD SEV-SNP or Intel TDX, through configfs-tsm
// or the legacy guest devices) and refuses to start on a machine that is
// none; snp and tdx insist on one; sim, the simulated TEE for development,
// runs only when asked for.
//
// Its imports are deliberately few (see internal/enclave): of the vendors'
// attestation libraries only the attester clients, never their
// verification code (internal/deptest checks it). Its measurement is the
// digest of this binary in sim mode (`clemmys measure` prints it), the
// launch measurement of the confidential VM image on real hardware.
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/clemmys/clemmys/internal/enclave"
	"github.com/clemmys/clemmys/internal/sandbox"
	"github.com/clemmys/clemmys/internal/tee/sim"
)

func main() {
	stdin, stdout := polled(0, "/dev/stdin", os.Stdin), polled(1, "/dev/stdout", os.Stdout)
	os.Exit(run(os.Args[1:], stdin, stdout, os.Stderr))
}

// polled returns fd as a file read and written through Go's network
// poller. The invoker hands the runtime the ends of two pipes in blocking
// mode; a blocking read parks a thread in the kernel for every frame, and
// the scheduler hands its processor to another thread and back around
// each request (measured: a sixth of a warm invocation's CPU in the
// runtime). Non-blocking, the goroutine parks and the thread serves the
// others. The flag belongs to the runtime's end of each pipe only. A
// descriptor that is not a pipe or socket (a terminal, a file) is used as
// it is (fallback).
func polled(fd int, name string, fallback *os.File) *os.File {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return fallback
	}
	if t := st.Mode & syscall.S_IFMT; t != syscall.S_IFIFO && t != syscall.S_IFSOCK {
		return fallback
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		return fallback
	}
	if f := os.NewFile(uintptr(fd), name); f != nil {
		return f
	}
	return fallback
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("clemmys-enclave", flag.ContinueOnError)
	fs.SetOutput(stderr)
	platform := fs.String("tee", teeAuto, "TEE platform: auto (detect SEV-SNP or TDX hardware, refuse without), snp, tdx, or sim (simulated, insecure, development only)")
	simDir := fs.String("sim-dir", "", "directory holding the simulated platform root key (sim only)")
	debug := fs.Bool("debug", false, "verbose diagnostics on stderr")
	kmsKeys := fs.String("kms-key", "", "the KMS identity public keys (ed25519, hex, comma-separated) whose key bundles the runtime accepts (required; on real TEEs, part of the measured command line)")
	var sb sandbox.Config
	fs.IntVar(&sb.MaxIdlePerModule, "warm-per-function", 0, "idle warm instances kept per function (0: default, negative: none)")
	fs.IntVar(&sb.MaxIdle, "warm-max", 0, "idle warm instances kept in all (0: default, negative: none)")
	fs.Uint64Var(&sb.MaxIdleBytes, "warm-max-bytes", 0, "linear memory of the idle instances in all (0: default)")
	fs.DurationVar(&sb.IdleTimeout, "warm-idle-timeout", 0, "close an instance idle for this long (0: default)")
	fs.IntVar(&sb.Prestart, "prestart", 0, "pre-initialized instances kept per fresh-instance function (0: default, negative: none)")
	maxFunctions := fs.Int("max-functions", 0, fmt.Sprintf("functions kept loaded at once; the least recently used is unloaded (0: %d)", enclave.DefaultMaxFunctions))
	if err := fs.Parse(args); err != nil {
		return 2
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	var pinned []ed25519.PublicKey
	for _, k := range strings.Split(*kmsKeys, ",") {
		if k == "" {
			continue
		}
		b, err := hex.DecodeString(k)
		if err != nil || len(b) != ed25519.PublicKeySize {
			fmt.Fprintf(stderr, "clemmys-enclave: --kms-key %q is not a 32-byte ed25519 public key in hex\n", k)
			return 2
		}
		pinned = append(pinned, b)
	}
	var cfg enclave.Config
	if *platform == sim.Platform {
		if *simDir == "" {
			fmt.Fprintln(stderr, "clemmys-enclave: --sim-dir is required for the sim platform")
			return 2
		}
		p, err := sim.LoadOrCreate(*simDir)
		if err != nil {
			fmt.Fprintf(stderr, "clemmys-enclave: sim platform: %v\n", err)
			return 1
		}
		m, err := sim.MeasureSelf()
		if err != nil {
			fmt.Fprintf(stderr, "clemmys-enclave: measure: %v\n", err)
			return 1
		}
		log.Warn("running on the SIMULATED TEE platform: no hardware protection")
		cfg = enclave.Config{Platform: sim.Platform, Measurement: m, Attester: p.Attester(m, 1, false)}
	} else {
		pt, err := openTEE(*platform)
		if err != nil {
			fmt.Fprintf(stderr, "clemmys-enclave: %v\n", err)
			return 1
		}
		log.Info("running in a confidential VM", "tee", pt.name, "measurement", hex.EncodeToString(pt.measurement))
		cfg = enclave.Config{Platform: pt.name, Measurement: pt.measurement, Attester: pt.attester}
	}
	if len(pinned) == 0 {
		fmt.Fprintln(stderr, "clemmys-enclave: --kms-key is required: the runtime accepts keys only from the KMS whose identity key it pins")
		return 2
	}
	cfg.Log, cfg.Sandbox, cfg.MaxFunctions, cfg.KMSKeys = log, sb, *maxFunctions, pinned
	rt, err := enclave.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "clemmys-enclave: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer rt.Close(context.Background())
	if err := rt.Serve(ctx, stdin, stdout); err != nil {
		log.Error("serve", "err", err)
		return 1
	}
	return 0
}
