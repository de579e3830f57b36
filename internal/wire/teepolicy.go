package wire

// Typed key-release rules for runtimes on real confidential hardware. The
// KMS evaluates them on the claims its verifiers vouch for
// (internal/tee: SNPClaims, TDXClaims); a refusal names the claim that
// failed. docs/protocol.md §Key release lists every rule.

// SNPTCB is an AMD TCB version (security patch levels).
type SNPTCB struct {
	BootLoader uint8 `cbor:"1,keyasint,omitempty"`
	TEE        uint8 `cbor:"2,keyasint,omitempty"`
	SNP        uint8 `cbor:"3,keyasint,omitempty"`
	Microcode  uint8 `cbor:"4,keyasint,omitempty"`
}

// SNPPolicy are the rules for AMD SEV-SNP runtimes. A DEBUG guest is
// always refused.
type SNPPolicy struct {
	// Measurements are the accepted launch MEASUREMENTs (48 bytes each);
	// at least one.
	Measurements [][]byte `cbor:"1,keyasint"`
	// MinTCB is the component-wise minimum REPORTED_TCB.
	MinTCB SNPTCB `cbor:"2,keyasint,omitempty"`
	// AllowSMT accepts guests whose policy allows simultaneous
	// multithreading (the default of most hypervisors).
	AllowSMT bool `cbor:"3,keyasint,omitempty"`
	// AllowMigrationAgent accepts guests that may have a migration agent.
	AllowMigrationAgent bool `cbor:"4,keyasint,omitempty"`
	// HostData, when set (32 bytes), must equal HOST_DATA.
	HostData []byte `cbor:"5,keyasint,omitempty"`
	// IDKeyDigests, when set (48 bytes each), must hold ID_KEY_DIGEST.
	IDKeyDigests [][]byte `cbor:"6,keyasint,omitempty"`
	// MinGuestSVN is the lowest accepted GUEST_SVN.
	MinGuestSVN uint32 `cbor:"7,keyasint,omitempty"`
}

// TDXPolicy are the rules for Intel TDX runtimes. A TD with the DEBUG
// attribute is always refused.
type TDXPolicy struct {
	// MRTDs are the accepted MRTDs (48 bytes each); at least one.
	MRTDs [][]byte `cbor:"1,keyasint"`
	// RTMR0..RTMR3, when set, must hold the TD's register (48 bytes each).
	RTMR0 [][]byte `cbor:"2,keyasint,omitempty"`
	RTMR1 [][]byte `cbor:"3,keyasint,omitempty"`
	RTMR2 [][]byte `cbor:"4,keyasint,omitempty"`
	RTMR3 [][]byte `cbor:"5,keyasint,omitempty"`
	// MinTEETCBSVN, when set (16 bytes), is the component-wise minimum
	// TEE_TCB_SVN.
	MinTEETCBSVN []byte `cbor:"6,keyasint,omitempty"`
	// TCBStatuses are the accepted TCB statuses of Intel's collateral
	// (empty: "UpToDate" only).
	TCBStatuses []string `cbor:"7,keyasint,omitempty"`
}

// TDXTCBStatuses are the TCB statuses Intel's collateral uses, best first.
var TDXTCBStatuses = []string{"UpToDate", "SWHardeningNeeded", "ConfigurationNeeded",
	"ConfigurationAndSWHardeningNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"}
