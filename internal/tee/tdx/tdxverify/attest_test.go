package tdxverify

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/faketsm"
	"github.com/google/logger"

	"github.com/clemmys/clemmys/internal/tee"
	"github.com/clemmys/clemmys/internal/tee/tdx"
)

func fakeTDXGuest(provider string, quote []byte, gotInblob *[]byte) configfsi.Client {
	sub := faketsm.ReportV7(0)
	sub.ReadAttr = func(e *faketsm.ReportEntry, attr string) ([]byte, error) {
		switch attr {
		case "provider":
			return []byte(provider + "\n"), nil
		case "outblob":
			*gotInblob = bytes.Clone(e.InAttrs["inblob"].Value)
			return quote, nil
		case "privlevel_floor":
			return []byte("0\n"), nil
		}
		return nil, os.ErrNotExist
	}
	return &faketsm.Client{Subsystems: map[string]configfsi.Client{"report": sub}}
}

func TestAttesterThroughConfigfsTSM(t *testing.T) {
	var inblob []byte
	a, err := tdx.NewAttester(fakeTDXGuest("tdx_guest", realQuote, &inblob))
	if err != nil {
		t.Fatal(err)
	}
	var rd [64]byte
	copy(rd[:], "report data")
	ev, err := a.Attest(rd)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(inblob, rd[:]) {
		t.Fatalf("the attester wrote inblob %x", inblob)
	}
	p, blob, err := tee.Unwrap(ev)
	if err != nil || p != tdx.Platform || !bytes.Equal(blob, realQuote) {
		t.Fatalf("evidence %q %v", p, err)
	}
	if _, err := tdx.NewAttester(fakeTDXGuest("sev_guest", realQuote, &inblob)); err == nil {
		t.Fatal("a sev_guest provider made a TDX attester")
	}
	huge := make([]byte, tdx.MaxQuoteSize+1)
	a, _ = tdx.NewAttester(fakeTDXGuest("tdx_guest", huge, &inblob))
	if _, err := a.Attest(rd); err == nil {
		t.Fatal("an oversized quote was accepted")
	}
}

// go-tdx-guest's packages call logger.Init(os.Stdout) in their init; the
// enclave runtime's stdout is its IPC channel. Package teelog's init must
// win, so a library warning never reaches stdout. The child process is
// this test binary.
func TestLibraryLogNeverOnStdout(t *testing.T) {
	if os.Getenv("CLEMMYS_TEELOG_CHILD") == "1" {
		logger.Warning("MARKER-warning")
		logger.Error("MARKER-error")
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestLibraryLogNeverOnStdout$")
	cmd.Env = append(os.Environ(), "CLEMMYS_TEELOG_CHILD=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v\n%s", err, stderr.String())
	}
	if strings.Contains(stdout.String(), "MARKER") {
		t.Fatalf("the attestation library logged to stdout:\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), "MARKER-error") {
		t.Fatalf("the library's errors should reach stderr; stderr:\n%s", stderr.String())
	}
}
