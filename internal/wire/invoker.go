package wire

// Invoker messages.

// Heartbeat is published by every invoker every HeartbeatInterval.
type Heartbeat struct {
	InvokerID string `cbor:"1,keyasint"`
	Capacity  int    `cbor:"2,keyasint"` // concurrent activations it accepts
	InFlight  int    `cbor:"3,keyasint"`
	Time      int64  `cbor:"4,keyasint"` // unix ms
	// Runtimes are the enclave runtimes bound to a namespace that it runs
	// now (at most MaxHeartbeatRuntimes): what steps may designate.
	Runtimes []RuntimeInfo `cbor:"5,keyasint,omitempty"`
	// Received are the activation ids of the run requests it holds now
	// (received, not yet answered), when ReportsReceived: a controller
	// whose call is missing from them (past a grace) knows the request or
	// its answer was lost on the bus, and ends the step then rather than
	// at its deadline. An invoker too busy to see every request it was
	// sent (its run subscription saturated) does not report them.
	Received        []string `cbor:"6,keyasint,omitempty"`
	ReportsReceived bool     `cbor:"7,keyasint,omitempty"`
	// Direct counts the activations gateways sent it directly (the warm
	// path, DirectRequest) that it answered, by status, since it started:
	// how the controller accounts for what it did not dispatch.
	Direct DirectCounts `cbor:"8,keyasint,omitempty"`
}

// MaxHeartbeatRuntimes bounds Heartbeat.Runtimes, MaxHeartbeatReceived
// Heartbeat.Received.
const (
	MaxHeartbeatRuntimes = 4096
	MaxHeartbeatReceived = 4096
)

// RuntimeInfo names an invoker's runtime of a namespace by its id
// (envelope.RuntimeID of its ephemeral key).
type RuntimeInfo struct {
	Namespace string `cbor:"1,keyasint"`
	ID        []byte `cbor:"2,keyasint"`
}

// InvokerPlace asks an invoker for its runtime of a namespace, binding
// one (a spare, or a new process) if it has none (→ InvokerPlaced).
type InvokerPlace struct {
	Namespace string `cbor:"1,keyasint"`
}

// InvokerPlaced is the runtime an invoker placed a namespace on.
type InvokerPlaced struct {
	Runtime []byte `cbor:"1,keyasint"`
}

// RunRequest asks an invoker to run one step.
type RunRequest struct {
	ActivationID string `cbor:"1,keyasint"`
	Namespace    string `cbor:"2,keyasint"`
	Action       string `cbor:"3,keyasint"`
	FunctionID   []byte `cbor:"4,keyasint"`
	Envelope     []byte `cbor:"5,keyasint"`
	TimeoutMs    uint32 `cbor:"6,keyasint"` // bounds the whole call, Then included
	// Then are the function ids of the chain steps after this one, in
	// order: the invoker may have the runtime run a prefix of them on its
	// own outputs (RunResult.More), without a round trip per step. Empty:
	// this step only.
	Then [][]byte `cbor:"7,keyasint,omitempty"`
	// Runtime is the runtime the envelope designates (PlaceReply): an
	// invoker whose runtime of the namespace is another one answers
	// CodeMisplaced without running anything.
	Runtime []byte `cbor:"8,keyasint,omitempty"`
}

// RunResult is the outcome of one step. On success and on application or
// developer errors the runtime has sealed a result envelope and logs; on a
// refusal (a failed envelope check) nothing is sealed and ErrorCode says why.
type RunResult struct {
	Status       string `cbor:"1,keyasint"` // one of the Status* constants
	Envelope     []byte `cbor:"2,keyasint,omitempty"`
	Logs         []byte `cbor:"3,keyasint,omitempty"`
	ErrorCode    string `cbor:"4,keyasint,omitempty"`
	ErrorMessage string `cbor:"5,keyasint,omitempty"` // safe to show; never function data
	Start        int64  `cbor:"6,keyasint"`
	End          int64  `cbor:"7,keyasint"`
	InitMs       int64  `cbor:"8,keyasint,omitempty"` // time spent loading the function (cold start)
	Executed     bool   `cbor:"9,keyasint,omitempty"` // the runtime started the guest (all checks passed)
	// More are the outcomes of the steps of RunRequest.Then the runtime
	// ran after this one, in order: it stops after a step that did not
	// succeed. Steps not in More were not attempted.
	More []RunResult `cbor:"10,keyasint,omitempty"`
	// Receipt is the step's signed receipt sealed for the owner
	// (envelope.SealReceipt); empty for a step the runtime refused.
	Receipt []byte `cbor:"11,keyasint,omitempty"`
	// SealMicros is the runtime's time sealing the step's result, logs and
	// receipt (µs); the controller records it as the sealTimeUs annotation.
	SealMicros int64 `cbor:"12,keyasint,omitempty"`
}

// DirectRequest is a step a gateway sends an invoker itself (the warm
// path, SubjectInvokerDirect): a blocking single action placed on a
// runtime of that invoker. The invoker runs Run as if the controller had
// sent it, stores the activation's records the way the controller does
// (the running record only if the step outlives DeferReserveMs; the
// complete one before it answers) and answers with the complete record.
// Record is the running record (End 0, no status) the gateway made for
// the activation; its id is Run's.
//
// A request it must not run is refused with an error and no record:
// CodeMisplaced when the runtime designated is not this invoker's (the
// gateway then places the step again, through the controller), CodeConflict
// for a request id its runtime has run before (a copy of a request).
type DirectRequest struct {
	Run    RunRequest `cbor:"1,keyasint"`
	Record Activation `cbor:"2,keyasint"`
}

// DirectCounts are counts of activations by status (Heartbeat.Direct).
type DirectCounts struct {
	Success          uint64 `cbor:"1,keyasint,omitempty"`
	ApplicationError uint64 `cbor:"2,keyasint,omitempty"`
	DeveloperError   uint64 `cbor:"3,keyasint,omitempty"`
	InternalError    uint64 `cbor:"4,keyasint,omitempty"`
}
