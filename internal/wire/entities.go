package wire

// Packages, triggers and rules (OpenWhisk entities other than actions).
// The controller stores them in JetStream KV; all their fields are
// plaintext metadata except Parameters, which the gateway seals
// (SealedParams) before they leave it.

// Entity subjects.
const (
	SubjectPackagePut    = "clemmys.ctl.package.put"    // PackagePut → Package
	SubjectPackageGet    = "clemmys.ctl.package.get"    // EntityRef → Package
	SubjectPackageDelete = "clemmys.ctl.package.delete" // EntityRef → Package (Force deletes its actions)
	SubjectPackageList   = "clemmys.ctl.package.list"   // ListRequest → PackageList
	SubjectTriggerPut    = "clemmys.ctl.trigger.put"    // TriggerPut → Trigger
	SubjectTriggerGet    = "clemmys.ctl.trigger.get"    // EntityRef → Trigger
	SubjectTriggerDelete = "clemmys.ctl.trigger.delete" // EntityRef → Trigger
	SubjectTriggerList   = "clemmys.ctl.trigger.list"   // ListRequest → TriggerList
	SubjectRulePut       = "clemmys.ctl.rule.put"       // RulePut → Rule
	SubjectRuleGet       = "clemmys.ctl.rule.get"       // EntityRef → Rule
	SubjectRuleDelete    = "clemmys.ctl.rule.delete"    // EntityRef → Rule
	SubjectRuleList      = "clemmys.ctl.rule.list"      // ListRequest → RuleList
	SubjectRuleStatus    = "clemmys.ctl.rule.status"    // RuleStatus → Rule
	SubjectActivationPut = "clemmys.ctl.activation.put" // Activation → Activation (records made by the gateway: trigger activations)
)

// EntityRef names a package, trigger or rule.
type EntityRef struct {
	Namespace string `cbor:"1,keyasint"`
	Name      string `cbor:"2,keyasint"`
	Force     bool   `cbor:"3,keyasint,omitempty"` // package delete: also delete its actions
}

// SealedParams are default parameters sealed by the gateway (AES-256-GCM
// under a key derived from the gateway secret, bound to the entity's
// namespace, kind and name); only gateways open them. The controller stores
// them as opaque bytes.
type SealedParams []byte

// Binding is a package binding: this package refers to another one.
type Binding struct {
	Namespace string `cbor:"1,keyasint"`
	Name      string `cbor:"2,keyasint"`
}

// Package is a stored package.
type Package struct {
	Namespace   string       `cbor:"1,keyasint"`
	Name        string       `cbor:"2,keyasint"`
	Version     string       `cbor:"3,keyasint"`
	Publish     bool         `cbor:"4,keyasint"`
	Annotations []KeyValue   `cbor:"5,keyasint,omitempty"`
	Parameters  SealedParams `cbor:"6,keyasint,omitempty"`
	Binding     *Binding     `cbor:"7,keyasint,omitempty"`
	Updated     int64        `cbor:"8,keyasint"`
	// Tag is the gateway's MAC over namespace, name, Publish and Binding,
	// opaque to the controller: a controller cannot publish a private
	// package or redirect it to another one.
	Tag []byte `cbor:"9,keyasint,omitempty"`
	// Generation is the gateway's version of the package, covered by Tag
	// and checked against the KMS's version registry; 0: stored before
	// generations.
	Generation int64 `cbor:"10,keyasint,omitempty"`
}

// PackagePut stores a package.
type PackagePut struct {
	Package   Package `cbor:"1,keyasint"`
	Overwrite bool    `cbor:"2,keyasint"`
}

// PackageList is a page of packages.
type PackageList struct {
	Packages []Package `cbor:"1,keyasint"`
	Count    int       `cbor:"2,keyasint,omitempty"`
}

// Trigger is a stored trigger.
type Trigger struct {
	Namespace   string       `cbor:"1,keyasint"`
	Name        string       `cbor:"2,keyasint"`
	Version     string       `cbor:"3,keyasint"`
	Publish     bool         `cbor:"4,keyasint"`
	Annotations []KeyValue   `cbor:"5,keyasint,omitempty"`
	Parameters  SealedParams `cbor:"6,keyasint,omitempty"`
	Updated     int64        `cbor:"7,keyasint"`
}

// TriggerPut stores a trigger.
type TriggerPut struct {
	Trigger   Trigger `cbor:"1,keyasint"`
	Overwrite bool    `cbor:"2,keyasint"`
}

// TriggerList is a page of triggers.
type TriggerList struct {
	Triggers []Trigger `cbor:"1,keyasint"`
	Count    int       `cbor:"2,keyasint,omitempty"`
}

// Rule statuses.
const (
	RuleActive   = "active"
	RuleInactive = "inactive"
)

// Rule connects a trigger to an action (fully qualified "/ns/name" or
// "/ns/pkg/name").
type Rule struct {
	Namespace   string     `cbor:"1,keyasint"`
	Name        string     `cbor:"2,keyasint"`
	Version     string     `cbor:"3,keyasint"`
	Publish     bool       `cbor:"4,keyasint"`
	Annotations []KeyValue `cbor:"5,keyasint,omitempty"`
	Trigger     string     `cbor:"6,keyasint"` // "/ns/trigger"
	Action      string     `cbor:"7,keyasint"` // "/ns/action" or "/ns/pkg/action"
	Status      string     `cbor:"8,keyasint"` // RuleActive or RuleInactive
	Updated     int64      `cbor:"9,keyasint"`
	// Tag is the gateway's MAC over namespace, name, trigger, action,
	// status and Generation, opaque to the controller: a controller cannot
	// point a rule (and the trigger's parameters) at another action,
	// activate or deactivate it.
	Tag []byte `cbor:"10,keyasint,omitempty"`
	// Generation is the gateway's version of the rule, covered by Tag and
	// checked against the KMS's version registry (no rollback); 0: stored
	// before generations.
	Generation int64 `cbor:"11,keyasint,omitempty"`
}

// RulePut stores a rule.
type RulePut struct {
	Rule      Rule `cbor:"1,keyasint"`
	Overwrite bool `cbor:"2,keyasint"`
}

// RuleList is a page of rules.
type RuleList struct {
	Rules []Rule `cbor:"1,keyasint"`
	Count int    `cbor:"2,keyasint,omitempty"`
}

// RuleStatus enables or disables a rule. Tag and Generation replace the
// rule's (the gateway's MAC covers the status); Generation is the one the
// gateway tagged, and the controller changes nothing when the stored
// rule's generation is not Prev (a concurrent update: conflict).
type RuleStatus struct {
	Namespace  string `cbor:"1,keyasint"`
	Name       string `cbor:"2,keyasint"`
	Status     string `cbor:"3,keyasint"`
	Tag        []byte `cbor:"4,keyasint,omitempty"`
	Generation int64  `cbor:"5,keyasint,omitempty"`
	Prev       int64  `cbor:"6,keyasint,omitempty"`
}
