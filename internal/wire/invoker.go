package wire

// Invoker messages.

// Heartbeat is published by every invoker every HeartbeatInterval.
type Heartbeat struct {
	InvokerID string `cbor:"1,keyasint"`
	Capacity  int    `cbor:"2,keyasint"` // concurrent activations it accepts
	InFlight  int    `cbor:"3,keyasint"`
	Time      int64  `cbor:"4,keyasint"` // unix ms
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
}
