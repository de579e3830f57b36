package wire

// Prewarm messages: loading a function (key release, code fetch, compile)
// ahead of its first invocation (DESIGN §4, start-up optimizations).
//
// The gateway sends a Prewarm to the controller after a deploy and for the
// steps after the first of a sequence it invokes; the controller forwards it
// to the invoker its scheduler would give the namespace, which loads the
// function into the namespace's enclave runtime in the background. A
// prewarm is best effort: its failure is logged, never shown to a user.
// It carries routing metadata only; the key release it triggers goes, as
// for any step, to an attested runtime.

// Prewarm subjects.
const (
	SubjectPrewarm = "clemmys.ctl.prewarm" // Prewarm → PrewarmReply
)

// SubjectInvokerPrewarm is the subject an invoker takes prewarms on
// (Prewarm → PrewarmReply).
func SubjectInvokerPrewarm(invokerID string) string { return "clemmys.inv." + invokerID + ".prewarm" }

// Prewarm asks for a function version to be loaded before it is invoked.
type Prewarm struct {
	Namespace  string `cbor:"1,keyasint"` // the function's namespace: which runtime loads it
	Action     string `cbor:"2,keyasint"` // for logs and metrics only
	FunctionID []byte `cbor:"3,keyasint"` // the function version to load
}

// PrewarmReply acknowledges a prewarm: the invoker accepted it (the load
// runs in the background, so the reply says nothing about its outcome).
type PrewarmReply struct {
	InvokerID string `cbor:"1,keyasint,omitempty"` // the invoker that took it
	// Loaded: the function was already loaded there, nothing to do.
	Loaded bool `cbor:"2,keyasint,omitempty"`
}
