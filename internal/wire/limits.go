package wire

// NamespaceLimits are an operator's settings for one namespace, stored in
// the JetStream KV bucket store.BucketLimits under store.Key("ns", NS).
// The gateways write them (admin API) and watch the bucket, so that every
// replica enforces the same values; the controllers read the retention
// settings to sweep old activation records. A nil field takes the
// platform's default.
//
// Tag is the gateway's MAC over the rest (HMAC-SHA256 under a key derived
// from the gateway secret): a gateway ignores an entry whose tag does not
// verify and enforces the defaults instead, so whoever controls the store
// can delete a namespace's limits but not set them. The controller cannot
// verify the tag; retention is its job anyway (it could keep or drop
// records whatever the setting says).
type NamespaceLimits struct {
	Namespace string `cbor:"1,keyasint"`
	// Throttles per gateway replica (OpenWhisk's): invocations and
	// trigger fires per minute, invocations in flight. < 0 is unlimited.
	InvocationsPerMinute  *int `cbor:"2,keyasint,omitempty"`
	ConcurrentInvocations *int `cbor:"3,keyasint,omitempty"`
	FiresPerMinute        *int `cbor:"4,keyasint,omitempty"`
	// Ceilings of the per-action limits, in OpenWhisk's units (ms, MB):
	// a deploy above them is refused, an invocation of an action stored
	// with more is clamped to them.
	MaxActionTimeoutMs *int `cbor:"5,keyasint,omitempty"`
	MaxActionMemoryMB  *int `cbor:"6,keyasint,omitempty"`
	MaxActionLogsMB    *int `cbor:"7,keyasint,omitempty"`
	// Activation retention: records older than RetentionSeconds (default
	// 7 days), and beyond the newest RetentionCount (default: no count
	// limit), are deleted.
	RetentionSeconds *int64 `cbor:"8,keyasint,omitempty"`
	RetentionCount   *int   `cbor:"9,keyasint,omitempty"`
	Updated          int64  `cbor:"10,keyasint,omitempty"` // unix ms
	Tag              []byte `cbor:"11,keyasint,omitempty"`
}

// DefaultRetentionSeconds is how long activation records are kept when a
// namespace sets no retention: 7 days.
const DefaultRetentionSeconds = 7 * 24 * 3600
