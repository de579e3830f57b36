package sandbox

import "errors"

// Errors returned by Compile and Run. Test with errors.Is. Their messages,
// including the detail wrapped around them, are safe to show to the owner of
// the function; they never contain host paths, keys or other tenants' data.
var (
	// ErrInvalidModule: the bytes are not a valid WASI command module.
	ErrInvalidModule = errors.New("invalid module")
	// ErrTimeout: the run hit Limits.Timeout and the guest was stopped.
	ErrTimeout = errors.New("timeout")
	// ErrMemoryLimit: the guest tried to grow its memory past
	// Limits.MemoryBytes (or declares more initial memory than that).
	ErrMemoryLimit = errors.New("memory limit exceeded")
	// ErrOutputTooLarge: the guest wrote more than Limits.MaxOutputBytes to
	// stdout; it was stopped.
	ErrOutputTooLarge = errors.New("output too large")
	// ErrExit: the guest exited with a non-zero status (Result.ExitCode).
	// Status 1 is an application error of a function written with the sdk.
	ErrExit = errors.New("function exited with non-zero status")
	// ErrTrap: the guest trapped (a WebAssembly runtime error such as
	// unreachable, an out-of-bounds access or a stack overflow).
	ErrTrap = errors.New("function trapped")
	// ErrClosed: the Module or Engine was closed.
	ErrClosed = errors.New("sandbox closed")
)
