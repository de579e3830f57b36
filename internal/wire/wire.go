// Package wire defines the messages clemmys services exchange over the bus
// and the subjects they use. It holds types only (plus tiny helpers), so the
// enclave runtime can import it without pulling in the bus.
//
// Every message is CBOR with integer keys. Nothing in a wire message is
// confidential unless it is sealed (an envelope, sealed code, a key bundle
// sealed to an attested key, sealed logs): the bus and the controller are
// untrusted.
package wire

import (
	"errors"
	"fmt"
)

// Subjects. Services subscribe with queue groups so that several replicas
// can share the work.
const (
	SubjectKMSIdentity = "clemmys.kms.identity" // → KMSIdentity
	SubjectKMSNonce    = "clemmys.kms.nonce"    // → Nonce
	// Gateway calls and key releases go to the replica that issued their
	// nonce: SubjectKMSGatewayAt(Nonce.Replica) (GatewayCall →
	// GatewayReply), SubjectKMSReleaseAt (ReleaseRequest → ReleaseReply).

	SubjectActionPut      = "clemmys.ctl.action.put"      // ActionPut → Action
	SubjectActionGet      = "clemmys.ctl.action.get"      // ActionRef → Action
	SubjectActionDelete   = "clemmys.ctl.action.delete"   // ActionRef → Action
	SubjectActionList     = "clemmys.ctl.action.list"     // ListRequest → ActionList
	SubjectInvoke         = "clemmys.ctl.invoke"          // InvokeRequest → Activation
	SubjectPlace          = "clemmys.ctl.place"           // PlaceRequest → PlaceReply
	SubjectActivationGet  = "clemmys.ctl.activation.get"  // ActivationRef → Activation
	SubjectActivationList = "clemmys.ctl.activation.list" // ListRequest → ActivationList

	SubjectInvokerHeartbeat = "clemmys.inv.heartbeat" // Heartbeat (publish only)
)

// SubjectInvokerRun is the subject an invoker takes work on.
func SubjectInvokerRun(invokerID string) string { return "clemmys.inv." + invokerID + ".run" }

// SubjectInvokerPlace is the subject an invoker places namespaces on
// (InvokerPlace → InvokerPlaced).
func SubjectInvokerPlace(invokerID string) string { return "clemmys.inv." + invokerID + ".place" }

// Queue groups.
const (
	QueueKMS        = "kms"
	QueueController = "controller"
)

// Error codes carried by Error. They are safe to show to users.
const (
	CodeBadRequest   = "bad_request"
	CodeNotFound     = "not_found"
	CodeConflict     = "conflict"
	CodeForbidden    = "forbidden"
	CodeUnavailable  = "unavailable"
	CodeInternal     = "internal"
	CodeAttestation  = "attestation"
	CodePolicy       = "policy"
	CodeTooLarge     = "too_large"
	CodeTimeout      = "timeout"
	CodeInvalidNonce = "nonce"
	// CodeStale refuses an invocation sealed for an action entity that has
	// changed since the gateway read it; the gateway reads it again.
	CodeStale = "stale"
	// CodeMisplaced refuses an invocation whose steps designate a runtime
	// that is gone (its invoker, or the runtime, was replaced); nothing
	// ran. The gateway places the steps again and seals anew.
	CodeMisplaced = "misplaced"
)

// Error is an error whose code and message are safe to show to a user.
type Error struct {
	Code    string `cbor:"1,keyasint"`
	Message string `cbor:"2,keyasint"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf returns a user-safe error with the given code.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// SubjectInvokerDirect is the subject a gateway sends a blocking single
// action's step to when it knows the invoker of its warm runtime
// (DirectRequest → Activation): the warm path, one bus hop, without the
// controller.
func SubjectInvokerDirect(invokerID string) string { return "clemmys.inv." + invokerID + ".direct" }

// HasCode reports whether err is (or wraps) a *Error with code.
func HasCode(err error, code string) bool {
	we, ok := errors.AsType[*Error](err)
	return ok && we.Code == code
}
