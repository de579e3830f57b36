package envelope

import (
	"errors"
	"fmt"
)

// codedError is the type of every sentinel of this package. Its message and
// code are constant strings: safe to log and to show to a remote party.
// Wrapping errors may add detail (indices, lengths, decoder messages) but
// never key material or plaintext.
type codedError struct {
	code string
	msg  string
}

func (e *codedError) Error() string { return "envelope: " + e.msg }

// The sentinels, in one table: code string and message.
var (
	ErrMalformed      error = &codedError{"malformed", "malformed envelope"}
	ErrVersion        error = &codedError{"version", "unsupported envelope version"}
	ErrSuite          error = &codedError{"suite", "unsupported or mismatched suite"}
	ErrExpired        error = &codedError{"expired", "envelope expired"}
	ErrStep           error = &codedError{"step", "step index out of range"}
	ErrWrongFunction  error = &codedError{"wrong_function", "step names another function"}
	ErrWrongCode      error = &codedError{"wrong_code", "step names another code digest"}
	ErrKeyVersion     error = &codedError{"key_version", "step names another key version"}
	ErrWrongRuntime   error = &codedError{"wrong_runtime", "step is for another runtime"}
	ErrCapsule        error = &codedError{"capsule", "capsule does not open"}
	ErrBody           error = &codedError{"body", "body does not open"}
	ErrCodeDigest     error = &codedError{"code_digest", "code does not open or does not match its digest"}
	ErrReplay         error = &codedError{"replay", "step already seen (replay)"}
	ErrHeaderMismatch error = &codedError{"header_mismatch", "result header differs from the request's"}
	ErrAuth           error = &codedError{"auth", "envelope not created by an authorized gateway"}
)

// Code returns the stable, machine-readable code of the first envelope
// sentinel in err's chain ("malformed", "version", "suite", "expired",
// "step", "wrong_function", "wrong_code", "key_version", "wrong_runtime",
// "capsule", "body",
// "code_digest", "replay", "header_mismatch", "auth"), or "" if there is none.
// Codes are safe to show to users; Error() strings of wrapped errors may
// carry decoder detail and belong in logs.
func Code(err error) string {
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.code
	}
	return ""
}

// wrap returns an error that matches sentinel with errors.Is and adds a
// detail message.
func wrap(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}

// malformed wraps ErrMalformed.
func malformed(format string, args ...any) error {
	return wrap(ErrMalformed, format, args...)
}
