package cli

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/clemmys/clemmys/internal/tee"
)

type tdxRegisters struct {
	mrtd string
	rtmr [4]string
}

// measureReal prints what `clemmys measure --tee snp|tdx` can compute
// locally (the runtime binary's digests; the combined TDX measurement from
// given registers) and explains what comes from the image build.
func measureReal(w io.Writer, platform, enclave string, regs *tdxRegisters) error {
	b, err := os.ReadFile(enclave)
	if err != nil {
		return err
	}
	s256, s384 := sha256.Sum256(b), sha512.Sum384(b)
	fmt.Fprintf(w, "enclave runtime binary %s\n  sha256 %x\n  sha384 %x\n\n", enclave, s256, s384)
	if platform == "tdx" {
		if regs.mrtd != "" {
			mrtd, err := hexN(regs.mrtd, 48, "--mrtd")
			if err != nil {
				return err
			}
			var rtmr [4][]byte
			for i, r := range regs.rtmr {
				if rtmr[i], err = hexN(r, 48, fmt.Sprintf("--rtmr%d", i)); err != nil {
					return err
				}
			}
			fmt.Fprintf(w, "combined TDX measurement (what the runtime reports, SHA-384 over MRTD and RTMR0..3):\n  %x\n\n", tee.TDXMeasurement(mrtd, rtmr))
		}
		fmt.Fprint(w, tdxExplain)
		return nil
	}
	fmt.Fprint(w, snpExplain)
	return nil
}

func hexN(s string, n int, flagName string) ([]byte, error) {
	if s == "" {
		return make([]byte, n), nil
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != n {
		return nil, fmt.Errorf("%s must be %d bytes of hex", flagName, n)
	}
	return b, nil
}

const snpExplain = `AMD SEV-SNP: the key-release policy pins the launch MEASUREMENT of the
confidential VM image the runtime runs in. It is not a digest of this binary
alone: the AMD secure processor hashes the guest's initial memory, i.e. the
OVMF firmware, and with measured direct boot (OVMF's kernel-hashes table)
the SHA-256 of the kernel, initrd and command line, and the vCPUs' initial
state. The runtime binary is bound through the initrd, which contains it
(sha256 above) and nothing that runs other code. Compute the value from the
image build with AMD's sev-snp-measure:

  sev-snp-measure --mode snp --vcpus N --vcpu-type EPYC-v4 \
      --ovmf OVMF.fd --kernel vmlinuz --initrd initrd.img --append "CMDLINE"

or read it from the runtime's first log line in the VM
("running in a confidential VM ... measurement=..."), then pin it:

  clemmys policy allow snp:measurement=HEX min-tcb=BL.TEE.SNP.UCODE

docs/operations.md ("Real confidential hardware") has the whole procedure.
`

const tdxExplain = `Intel TDX: the key-release policy pins MRTD (the TD firmware, TDVF, as
loaded) and, through RTMR1 and RTMR2, what the firmware measured at boot:
the kernel and initrd (the initrd contains the runtime binary, sha384 above)
and the kernel command line. They depend on the image build, not on this
binary alone: compute them with the image's measurement tool (for example
tdx-measure from the TDX tooling, or the cloud's published MRTD for its
TDVF), or read them from a quote of the running TD. Then pin them:

  clemmys policy allow tdx:mrtd=HEX rtmr1=HEX rtmr2=HEX

Pass --mrtd and --rtmr0..3 to print the combined measurement the runtime
reports in its logs. docs/operations.md ("Real confidential hardware") has
the whole procedure.
`
