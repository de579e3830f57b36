package wire

// Controller messages: entities, invocations, activation records.

// KeyValue is an OpenWhisk annotation or parameter.
type KeyValue struct {
	Key   string `cbor:"1,keyasint" json:"key"`
	Value any    `cbor:"2,keyasint" json:"value"`
}

// Limits of an action, OpenWhisk units.
type Limits struct {
	TimeoutMs   uint32 `cbor:"1,keyasint" json:"timeout"`
	MemoryMB    uint32 `cbor:"2,keyasint" json:"memory"`
	LogsMB      uint32 `cbor:"3,keyasint" json:"logs"`
	Concurrency uint32 `cbor:"4,keyasint" json:"concurrency"`
}

// Action is the stored action entity. Everything in it is plaintext
// metadata except the code, which lives sealed in the object store under
// Function's id.
type Action struct {
	Namespace   string       `cbor:"1,keyasint"`
	Name        string       `cbor:"2,keyasint"`
	Version     string       `cbor:"3,keyasint"` // semantic version, 0.0.1 first
	Publish     bool         `cbor:"4,keyasint"`
	Kind        string       `cbor:"5,keyasint"` // "wasm"
	Limits      Limits       `cbor:"6,keyasint"`
	Annotations []KeyValue   `cbor:"7,keyasint"`
	Function    SignedRecord `cbor:"8,keyasint"`  // KMS-signed function record
	CodeSize    int64        `cbor:"9,keyasint"`  // plaintext size of the module
	Updated     int64        `cbor:"10,keyasint"` // unix ms
	// Components of a sequence (Kind "sequence"), fully qualified
	// "/namespace/action"; a sequence has no code and no function record.
	Components []string `cbor:"11,keyasint,omitempty"`
	// DefinitionTag authenticates a sequence's components: the gateway's
	// MAC over namespace, name and components, opaque to the controller.
	DefinitionTag []byte `cbor:"12,keyasint,omitempty"`
	// Parameters are the action's default parameters, sealed by the gateway.
	Parameters SealedParams `cbor:"13,keyasint,omitempty"`
	// Revision is the store revision of the entity when the controller
	// read it (set on reads, never stored). An invocation names it so the
	// controller can refuse one sealed for an entity that has changed since
	// (CodeStale): the gateway may seal from entities it read before.
	Revision uint64 `cbor:"14,keyasint,omitempty"`
	// WebTag authenticates the web annotations (web-export, raw-http,
	// require-whisk-auth, final, web-custom-options): the gateway's MAC
	// over namespace, name and their values, opaque to the controller.
	WebTag []byte `cbor:"15,keyasint,omitempty"`
	// Generation is the gateway's version of the entity, covered by
	// WebTag and DefinitionTag and checked against the KMS's version
	// registry (no rollback of annotations or components); 0: stored
	// before generations.
	Generation int64 `cbor:"16,keyasint,omitempty"`
}

// Action kinds. The nodejs kinds are JavaScript functions, run by the
// JavaScript engine inside the sandbox (the gateway stores nodejs:default
// as the kind it stands for, KindNodeJS20).
const (
	KindWasm     = "wasm"
	KindSequence = "sequence"
	KindNodeJS20 = "nodejs:20"
	KindNodeJS22 = "nodejs:22"
)

// MaxSequenceComponents is OpenWhisk's limit on the length of a sequence.
const MaxSequenceComponents = 50

// ActionPut stores an action and its sealed code.
type ActionPut struct {
	Action     Action `cbor:"1,keyasint"`
	SealedCode []byte `cbor:"2,keyasint"`
	Overwrite  bool   `cbor:"3,keyasint"`
	// KeepCode updates an existing wasm action without new code: Action's
	// function record must be the stored one (same function id) and
	// SealedCode is empty; the stored code object is kept.
	KeepCode bool `cbor:"4,keyasint,omitempty"`
}

// ActionRef names an action.
type ActionRef struct {
	Namespace string `cbor:"1,keyasint"`
	Name      string `cbor:"2,keyasint"`
}

// ListRequest lists the entities of a namespace, newest first.
type ListRequest struct {
	Namespace string `cbor:"1,keyasint"`
	Name      string `cbor:"2,keyasint,omitempty"` // activations: filter by action name; actions: by package ("pkg/"); rules: by trigger ("/ns/trigger", any status)
	Skip      int    `cbor:"3,keyasint,omitempty"`
	Limit     int    `cbor:"4,keyasint,omitempty"`
	Since     int64  `cbor:"5,keyasint,omitempty"` // activations: start >= Since (unix ms)
	Upto      int64  `cbor:"6,keyasint,omitempty"` // activations: start <= Upto (unix ms)
	Count     bool   `cbor:"7,keyasint,omitempty"` // only count the matches (the reply's Count)
}

// ActionList is a page of actions.
type ActionList struct {
	Actions []Action `cbor:"1,keyasint"`
	Count   int      `cbor:"2,keyasint,omitempty"` // with ListRequest.Count
	// ParamsOmitted: the sealed default parameters of some listed actions
	// were left out to bound the answer (theirs are nil); the gateway
	// reads those actions one by one.
	ParamsOmitted bool `cbor:"3,keyasint,omitempty"`
}

// InvokeRequest asks the controller to run a sealed envelope. The gateway
// chooses ActivationID = hex(envelope request id), which binds the stored
// record to the authenticated header.
type InvokeRequest struct {
	ActivationID string `cbor:"1,keyasint"`
	Namespace    string `cbor:"2,keyasint"`
	Action       string `cbor:"3,keyasint"`
	Version      string `cbor:"4,keyasint"`
	Subject      string `cbor:"5,keyasint"` // the authenticated caller
	Envelope     []byte `cbor:"6,keyasint"`
	Blocking     bool   `cbor:"7,keyasint"` // reply after completion; else reply at once
	Limits       Limits `cbor:"8,keyasint"`
	FunctionID   []byte `cbor:"9,keyasint"` // routing: which function version to load
	// Steps route each step of a sequence (Action is then the sequence);
	// empty for a single action. Steps[j] is the function of chain step j
	// in the envelope header; the controller runs them in order, each
	// step's sealed output being the next step's envelope.
	Steps []StepRoute `cbor:"10,keyasint,omitempty"`
	// RecordNamespace files the activation records (the invocation's and
	// its components') when it differs from Namespace: the caller's
	// namespace when it invokes an action of another namespace's public
	// package (OpenWhisk records activations in the caller's namespace).
	// Empty: Namespace.
	RecordNamespace string `cbor:"11,keyasint,omitempty"`
	// Revision is the revision of the invoked action entity the gateway
	// sealed for (Action.Revision); 0: not checked. The controller refuses
	// the request with CodeStale when the stored entity has another one.
	Revision uint64 `cbor:"12,keyasint,omitempty"`
	// Invoker runs the single action: the one whose runtime the envelope
	// designates (PlaceReply). Sequences name one per step (StepRoute).
	Invoker string `cbor:"13,keyasint,omitempty"`
	// Runtime is the runtime the envelope designates on Invoker (what the
	// runtime checks, repeated for routing).
	Runtime []byte `cbor:"14,keyasint,omitempty"`
	// WaitMs is how long the gateway waits for a blocking activation's
	// record before answering 202 (0: not said). With WaitMs of at least
	// MinDeferredWaitMs the gateway promises to confirm the record is
	// stored (ActivationRef.Running) before it answers 202, so the
	// controller may defer the running record of a single action: one that
	// completes within DeferReserveMs gets only its complete record,
	// written once (protocol.md §2.3).
	WaitMs uint32 `cbor:"15,keyasint,omitempty"`
}

// FiledIn is the namespace r's activation records are filed in:
// RecordNamespace, or Namespace when it is empty.
func (r *InvokeRequest) FiledIn() string {
	if r.RecordNamespace != "" {
		return r.RecordNamespace
	}
	return r.Namespace
}

// Deferred running records (InvokeRequest.WaitMs).
const (
	// MinDeferredWaitMs is the shortest gateway wait with which the
	// controller defers a running record.
	MinDeferredWaitMs = 1000
	// DeferReserveMs is how long a blocking single action may run before
	// the controller stores its running record.
	DeferReserveMs = 250
)

// PlaceRequest asks the controller where the steps of an invocation of
// namespace Namespace would run: Actions[j] is step j's action ("pkg/a").
type PlaceRequest struct {
	Namespace string   `cbor:"1,keyasint"`
	Actions   []string `cbor:"2,keyasint"`
}

// PlaceReply designates, per step, the invoker and its runtime (an
// envelope names the runtime, an invoke request the invoker).
type PlaceReply struct {
	Steps []Placement `cbor:"1,keyasint"`
}

// Placement is where one step runs.
type Placement struct {
	Invoker string `cbor:"1,keyasint"`
	Runtime []byte `cbor:"2,keyasint"`
}

// StepRoute is the routing metadata of one step of a sequence.
type StepRoute struct {
	Namespace  string `cbor:"1,keyasint"`
	Action     string `cbor:"2,keyasint"`
	Version    string `cbor:"3,keyasint"`
	FunctionID []byte `cbor:"4,keyasint"`
	Limits     Limits `cbor:"5,keyasint"`
	Revision   uint64 `cbor:"6,keyasint,omitempty"` // as InvokeRequest.Revision
	Invoker    string `cbor:"7,keyasint,omitempty"` // as InvokeRequest.Invoker
	Runtime    []byte `cbor:"8,keyasint,omitempty"` // as InvokeRequest.Runtime
}

// Activation statuses, OpenWhisk's names and codes.
const (
	StatusSuccess          = "success"                // 0
	StatusApplicationError = "application error"      // 1
	StatusDeveloperError   = "action developer error" // 2
	StatusInternalError    = "whisk internal error"   // 3
)

// StatusCode returns OpenWhisk's numeric code of a status.
func StatusCode(status string) int {
	switch status {
	case StatusSuccess:
		return 0
	case StatusApplicationError:
		return 1
	case StatusDeveloperError:
		return 2
	default:
		return 3
	}
}

// Activation is a stored activation record. Result and Logs are sealed; only
// Status (the success/failure bit, OpenWhisk's four values) and ErrorCode (a
// protocol refusal code such as "expired", never user data) are plaintext.
type Activation struct {
	ActivationID string     `cbor:"1,keyasint"`
	Namespace    string     `cbor:"2,keyasint"`
	Name         string     `cbor:"3,keyasint"`
	Version      string     `cbor:"4,keyasint"`
	Subject      string     `cbor:"5,keyasint"`
	Start        int64      `cbor:"6,keyasint"` // unix ms
	End          int64      `cbor:"7,keyasint"` // unix ms; 0 while running
	Status       string     `cbor:"8,keyasint"`
	ErrorCode    string     `cbor:"9,keyasint,omitempty"`
	ErrorMessage string     `cbor:"10,keyasint,omitempty"` // platform error, safe to show (never function output)
	Result       []byte     `cbor:"11,keyasint,omitempty"` // sealed result envelope
	Logs         []byte     `cbor:"12,keyasint,omitempty"` // sealed logs
	Annotations  []KeyValue `cbor:"13,keyasint,omitempty"`
	Cause        string     `cbor:"14,keyasint,omitempty"`
	Envelope     []byte     `cbor:"15,keyasint,omitempty"` // request header, for reopening sealed parts when Result is absent
	// Components are the activation ids of a sequence's component
	// activations, in order (OpenWhisk shows them as the sequence's logs).
	Components []string `cbor:"16,keyasint,omitempty"`
	// Step is the chain step (0-based) a component activation ran; its
	// Cause is the sequence's activation id.
	Step uint32 `cbor:"17,keyasint,omitempty"`
	// Receipts are the sealed receipts of the steps that ran
	// (wire.SignedReceipt sealed with envelope.SealReceipt): a single
	// action's or component's own, every component's in step order for a
	// sequence. The gateway opens them to authenticate the record.
	Receipts [][]byte `cbor:"18,keyasint,omitempty"`
}

// ActivationRef names an activation.
type ActivationRef struct {
	Namespace    string `cbor:"1,keyasint"`
	ActivationID string `cbor:"2,keyasint"`
	// Running answers a running record too (End 0), not only a complete
	// one: the gateway's check that an activation it answers 202 for is
	// stored.
	Running bool `cbor:"3,keyasint,omitempty"`
}

// ActivationList is a page of activations, newest first.
type ActivationList struct {
	Activations []Activation `cbor:"1,keyasint"`
	Count       int          `cbor:"2,keyasint,omitempty"` // with ListRequest.Count
}
