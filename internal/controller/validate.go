package controller

import (
	"regexp"
	"strings"

	"github.com/clemmys/clemmys/internal/actrec"
	"github.com/clemmys/clemmys/internal/wire"
)

// Limits on what the controller accepts.
const (
	maxNameLen       = 256 // one segment of a namespace or name (OpenWhisk)
	maxPathSegments  = 2   // "ns" or "ns/pkg"; "action" or "pkg/action"
	maxFunctionIDLen = 64
	maxRecordLen     = 64 << 10
	maxSigLen        = 1024 // an ed25519 signature is 64 bytes
	maxAnnotations   = 256
	maxAnnotationKey = 256
	// maxAnnotationsBytes bounds the encoded annotations of an action, so
	// that a page of actions fits in one bus message.
	maxAnnotationsBytes = 64 << 10
	maxVersionLen       = 64
	maxSubjectLen       = 512
	maxErrorFieldLen    = actrec.MaxErrorFieldLen
	maxTimeoutMs        = 60 * 60 * 1000 // 1 h
	maxMemoryMB         = 4096           // wasm32 address space
	maxLogsMB           = 1024
	maxConcurrency      = 500
	defaultTimeoutMs    = actrec.DefaultTimeoutMs
	defaultMemoryMB     = actrec.DefaultMemoryMB
	defaultLogsMB       = actrec.DefaultLogsMB
	activationIDLen     = 32
	maxListLimit        = 200
	kindWasm            = "wasm"
	firstVersion        = "0.0.1"
	notFoundMessage     = "The requested resource does not exist."
	conflictMessage     = "resource already exists"
	concurrentMessage   = "the resource was modified concurrently"
)

// entityName is OpenWhisk's entity name rule: word characters, '@', ' ',
// '.', '-'; starts with a word character and does not end with a space.
var entityName = regexp.MustCompile(`^(?:\w|\w[\w@ .-]*[\w@.-])$`)

var versionRE = regexp.MustCompile(`^[0-9A-Za-z.+-]+$`)

func badRequest(format string, args ...any) error {
	return wire.Errorf(wire.CodeBadRequest, format, args...)
}

func notFound() error { return wire.Errorf(wire.CodeNotFound, notFoundMessage) }

// validPath reports whether p is one to maxPathSegments entity names joined
// by '/'.
func validPath(p string) bool {
	if p == "" {
		return false
	}
	segs := strings.Split(p, "/")
	if len(segs) > maxPathSegments {
		return false
	}
	for _, s := range segs {
		if len(s) > maxNameLen || !entityName.MatchString(s) {
			return false
		}
	}
	return true
}

func checkNamespace(ns string) error {
	if ns == "" {
		return badRequest("namespace is required")
	}
	if !validPath(ns) {
		return badRequest("invalid namespace")
	}
	return nil
}

func checkRef(ns, name string) error {
	if err := checkNamespace(ns); err != nil {
		return err
	}
	if name == "" {
		return badRequest("name is required")
	}
	if !validPath(name) {
		return badRequest("invalid name")
	}
	return nil
}

// validActivationID reports whether id is 32 lowercase hex characters, the
// format of ids chosen by the gateway.
func validActivationID(id string) bool {
	if len(id) != activationIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// validInvokerID reports whether id can be a single NATS subject token.
func validInvokerID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c <= ' ' || c >= 0x7f || c == '.' || c == '*' || c == '>' {
			return false
		}
	}
	return true
}

// normalizeLimits fills in OpenWhisk's defaults and checks the ranges.
func normalizeLimits(l wire.Limits) (wire.Limits, error) {
	l = actrec.WithDefaults(l)
	switch {
	case l.TimeoutMs > maxTimeoutMs:
		return l, badRequest("timeout limit exceeds %d ms", maxTimeoutMs)
	case l.MemoryMB > maxMemoryMB:
		return l, badRequest("memory limit exceeds %d MB", maxMemoryMB)
	case l.LogsMB > maxLogsMB:
		return l, badRequest("log limit exceeds %d MB", maxLogsMB)
	case l.Concurrency > maxConcurrency:
		return l, badRequest("concurrency limit exceeds %d", maxConcurrency)
	}
	return l, nil
}

// page returns the skip and limit of a list request: limit 0 means the
// maximum (OpenWhisk's "limit=0"), larger limits are capped at the maximum.
// The gateway applies the default (30) when the client gave no limit.
func page(skip, limit int) (int, int, error) {
	if skip < 0 {
		return 0, 0, badRequest("skip out of range")
	}
	if limit < 0 {
		return 0, 0, badRequest("limit out of range")
	}
	if limit == 0 || limit > maxListLimit {
		limit = maxListLimit
	}
	return skip, limit, nil
}

// truncate cuts an untrusted string to at most n bytes.
func truncate(s string, n int) string { return actrec.Truncate(s, n) }
