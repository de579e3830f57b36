package cli

// Shared machinery of the wsk-style verbs (action, activation, trigger,
// rule, package, namespace): flag parsing with wsk's "-p KEY VALUE" pairs
// and flags after positional arguments, configuration, output and errors.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
)

// keyValue is OpenWhisk's {"key": K, "value": V}.
type keyValue struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// wskVerb runs one verb with its arguments (after the verb).
type wskVerb func(c *wskCmd, args []string) int

// runNoun dispatches `clemmys NOUN VERB ...`.
func runNoun(noun, usage string, verbs map[string]wskVerb, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	run, ok := verbs[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "clemmys %s: unknown verb %q\n\n%s", noun, args[0], usage)
		return 2
	}
	return run(newWskCmd(noun+" "+args[0], stdout, stderr), args[1:])
}

// wskCmd is one run of a verb: its flags, arguments, client and output.
type wskCmd struct {
	name           string // "action create"
	stdout, stderr io.Writer
	fs             *flag.FlagSet
	cfg            *apiConfig
	dataDir        *string
	jsonOut        *bool
	admin          bool // talk to the admin API with the admin credential
	adminFlag      *bool
	pairs          map[string]*[]keyValue // "-p KEY VALUE" style flags by name
	params, annots []keyValue
	paramFile      *string
	args           []string // positional arguments
	exit           int      // the exit status when parse fails
	c              *apiClient
	ctx            context.Context
}

func newWskCmd(name string, stdout, stderr io.Writer) *wskCmd {
	c := &wskCmd{name: name, stdout: stdout, stderr: stderr, ctx: context.Background(),
		pairs: map[string]*[]keyValue{}}
	c.fs = flag.NewFlagSet("clemmys "+name, flag.ContinueOnError)
	c.fs.SetOutput(stderr)
	c.cfg, c.dataDir = clientFlags(c.fs)
	c.cfg.logOut = stderr
	c.fs.BoolVar(&c.cfg.Insecure, "i", false, "short for --insecure")
	c.jsonOut = c.fs.Bool("json", false, "print the API's JSON answer as is (for scripts)")
	return c
}

// pairFlag registers a repeatable "-NAME KEY VALUE" flag; VALUE is parsed
// as JSON if it is JSON, else taken as a string (as wsk does).
func (c *wskCmd) pairFlag(dst *[]keyValue, usage string, names ...string) {
	for _, n := range names {
		c.pairs[n] = dst
		c.fs.Func(n, usage, func(string) error { return fmt.Errorf("takes two arguments: -%s KEY VALUE", n) })
	}
}

// withParams registers -p KEY VALUE and -P FILE.
func (c *wskCmd) withParams() {
	c.pairFlag(&c.params, "a parameter, as `KEY VALUE` (repeatable; VALUE is JSON or a string)", "p", "param")
	c.paramFile = c.fs.String("P", "", "JSON `FILE` of parameters (an object); -p adds to them")
	c.fs.StringVar(c.paramFile, "param-file", "", "same as -P")
}

// withAnnotations registers -a KEY VALUE.
func (c *wskCmd) withAnnotations() {
	c.pairFlag(&c.annots, "an annotation, as `KEY VALUE` (repeatable)", "a", "annotation")
}

// boolFlag registers a bool flag under several names.
func (c *wskCmd) boolFlag(usage string, names ...string) *bool {
	p := new(bool)
	for _, n := range names {
		c.fs.BoolVar(p, n, false, usage)
	}
	return p
}

// intFlag registers an int flag under several names.
func (c *wskCmd) intFlag(def int, usage string, names ...string) *int {
	p := new(int)
	for _, n := range names {
		c.fs.IntVar(p, n, def, usage)
	}
	return p
}

// isSet reports whether any of the named flags was given.
func (c *wskCmd) isSet(names ...string) bool {
	set := false
	c.fs.Visit(func(f *flag.Flag) {
		for _, n := range names {
			set = set || f.Name == n
		}
	})
	return set
}

// paging registers --limit and --skip and returns them as query values.
func (c *wskCmd) paging(defLimit int) func() url.Values {
	limit := c.intFlag(defLimit, "at most `N` entries (0: the server's maximum, 200)", "limit")
	skip := c.intFlag(0, "skip the first `N` entries", "skip")
	return func() url.Values {
		q := url.Values{}
		q.Set("limit", strconv.Itoa(*limit))
		if *skip > 0 {
			q.Set("skip", strconv.Itoa(*skip))
		}
		return q
	}
}

// parse parses args (flags may follow positional arguments), checks that
// there are between min and max positional arguments (max < 0: any),
// resolves the configuration and makes the client. When it returns false
// it has said why, and c.exit is the exit status.
func (c *wskCmd) parse(args []string, argsUsage string, min, max int) bool {
	c.fs.Usage = func() {
		fmt.Fprintf(c.stderr, "Usage: clemmys %s %s\n\nFlags:\n", c.name, argsUsage)
		c.fs.PrintDefaults()
	}
	if err := c.parseArgs(args); err != nil {
		c.exit = 2
		if errors.Is(err, flag.ErrHelp) {
			c.exit = 0
		}
		return false
	}
	if len(c.args) < min || (max >= 0 && len(c.args) > max) {
		fmt.Fprintf(c.stderr, "error: wrong number of arguments\nUsage: clemmys %s %s (-h for the flags)\n", c.name, argsUsage)
		c.exit = 2
		return false
	}
	var err error
	c.cfg.quiet = *c.jsonOut
	if c.admin || (c.adminFlag != nil && *c.adminFlag) {
		err = c.cfg.resolveAdmin(*c.dataDir)
	} else {
		err = c.cfg.resolve(*c.dataDir)
	}
	if err == nil {
		c.c, err = newAPIClient(c.cfg)
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "error: %v\n", err)
		c.exit = 1
		return false
	}
	return true
}

// parseArgs takes out the "-p KEY VALUE" pairs, then parses flags wherever
// they are among the positional arguments ("--" ends the flags).
func (c *wskCmd) parseArgs(args []string) error {
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		if dst, ok := c.pairs[strings.TrimLeft(a, "-")]; ok && strings.HasPrefix(a, "-") {
			if i+2 >= len(args) {
				fmt.Fprintf(c.stderr, "flag %s needs two arguments: %s KEY VALUE\n", a, a)
				return errors.New("missing pair")
			}
			*dst = append(*dst, keyValue{Key: args[i+1], Value: jsonOrString(args[i+2])})
			i += 2
			continue
		}
		if group, ok := c.shortGroup(a); ok {
			rest = append(rest, group...)
			continue
		}
		rest = append(rest, a)
	}
	for {
		if err := c.fs.Parse(rest); err != nil {
			return err
		}
		left := c.fs.Args()
		if len(left) == 0 {
			return nil
		}
		if n := len(rest) - len(left); n > 0 && rest[n-1] == "--" {
			c.args = append(c.args, left...)
			return nil
		}
		c.args = append(c.args, left[0])
		rest = left[1:]
	}
}

// oneName runs op on the single NAME argument.
func (c *wskCmd) oneName(args []string, k entityKind, op func(entityKind, string) int) int {
	if !c.parse(args, "NAME", 1, 1) {
		return c.exit
	}
	return op(k, c.args[0])
}

// parseNameParams parses "NAME [-p KEY VALUE]... [-P FILE]" and returns
// NAME and the parameters as an object (invoke and fire bodies). When it
// returns false it has said why, and c.exit is the exit status.
func (c *wskCmd) parseNameParams(args []string) (string, map[string]any, bool) {
	c.withParams()
	if !c.parse(args, "NAME", 1, 1) {
		return "", nil, false
	}
	params, err := c.paramObject()
	if err != nil {
		c.exit = c.fail("read the parameters", err)
		return "", nil, false
	}
	return c.args[0], params, true
}

// jsonOrString is s parsed as JSON, or s itself when it is not JSON.
func jsonOrString(s string) any {
	var v any
	if json.Unmarshal([]byte(s), &v) == nil {
		return v
	}
	return s
}

// paramList is the -P file's parameters then the -p ones, as key-value
// pairs (a later key replaces an earlier one).
func (c *wskCmd) paramList() ([]keyValue, error) {
	var out []keyValue
	if c.paramFile != nil && *c.paramFile != "" {
		b, err := os.ReadFile(*c.paramFile)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("%s: parameters must be a JSON object: %w", *c.paramFile, err)
		}
		for k, v := range m {
			out = append(out, keyValue{Key: k, Value: v})
		}
	}
	for _, kv := range c.params {
		out = setKV(out, kv)
	}
	return out, nil
}

// paramObject is paramList as a JSON object (invoke and fire bodies).
func (c *wskCmd) paramObject() (map[string]any, error) {
	list, err := c.paramList()
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	for _, kv := range list {
		m[kv.Key] = kv.Value
	}
	return m, nil
}

func setKV(list []keyValue, kv keyValue) []keyValue {
	for i := range list {
		if list[i].Key == kv.Key {
			list[i] = kv
			return list
		}
	}
	return append(list, kv)
}

// entityBody adds the parameters and annotations of the flags to body.
func (c *wskCmd) entityBody(body map[string]any) error {
	if c.paramFile != nil {
		params, err := c.paramList()
		if err != nil {
			return err
		}
		if len(params) > 0 {
			body["parameters"] = params
		}
	}
	if len(c.annots) > 0 {
		body["annotations"] = c.annots
	}
	return nil
}

// fail reports a failed operation ("get action 'x'") and returns 1.
func (c *wskCmd) fail(what string, err error) int {
	msg := err.Error()
	if ae, ok := errors.AsType[*apiError](err); ok {
		msg = ae.Msg
		if ae.Code != "" {
			msg += " (code " + ae.Code + ")"
		}
		if ae.Status == 401 {
			msg += " Check the credential (--auth, AUTH in wskprops)."
		}
	}
	if what != "" {
		msg = "Unable to " + what + ": " + msg
	}
	fmt.Fprintf(c.stderr, "error: %s\n", msg)
	return 1
}

// usageError reports a wrong use of the command and returns 2.
func (c *wskCmd) usageError(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "error: "+format+"\n", args...)
	return 2
}

// ok prints "ok: ..." unless --json.
func (c *wskCmd) ok(format string, args ...any) {
	if !*c.jsonOut {
		fmt.Fprintf(c.stdout, "ok: "+format+"\n", args...)
	}
}

// printJSON prints v (a json.RawMessage or any value) indented.
func (c *wskCmd) printJSON(v any) {
	raw, ok := v.(json.RawMessage)
	if !ok {
		var err error
		if raw, err = json.Marshal(v); err != nil {
			fmt.Fprintf(c.stdout, "%v\n", v)
			return
		}
	}
	var buf bytes.Buffer
	if json.Indent(&buf, raw, "", "    ") != nil {
		buf.Reset()
		buf.Write(raw)
	}
	fmt.Fprintln(c.stdout, strings.TrimSpace(buf.String()))
}

// table prints a title line and tab-aligned rows.
func (c *wskCmd) table(title string, rows [][]string) {
	if title != "" {
		fmt.Fprintln(c.stdout, title)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 8, 3, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
}

// entityKind is a collection of the REST API: "actions", "triggers", ...
type entityKind struct{ singular, plural string }

var (
	kindAction     = entityKind{"action", "actions"}
	kindActivation = entityKind{"activation", "activations"}
	kindTrigger    = entityKind{"trigger", "triggers"}
	kindRule       = entityKind{"rule", "rules"}
	kindPackage    = entityKind{"package", "packages"}
)

// splitName splits "/ns/a/b" into ("ns", "a/b") and "a/b" into ("_", "a/b").
func splitName(name string) (ns, rest string) {
	if s, ok := strings.CutPrefix(name, "/"); ok {
		ns, rest, _ = strings.Cut(s, "/")
		return ns, rest
	}
	return "_", name
}

// qualify is the fully qualified name wsk shows: "/_/a" for "a".
func qualify(name string) string {
	ns, rest := splitName(name)
	return "/" + ns + "/" + rest
}

// collectionPath is /api/v1/namespaces/{ns}/{plural}.
func (k entityKind) collectionPath(ns string) string {
	return "/api/v1/namespaces/" + url.PathEscape(ns) + "/" + k.plural
}

// path is the REST path of the named entity (each segment escaped).
func (k entityKind) path(name string) string {
	ns, rest := splitName(name)
	segs := strings.Split(rest, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return k.collectionPath(ns) + "/" + strings.Join(segs, "/")
}

// putEntity creates (or with update, replaces) an entity.
func (c *wskCmd) putEntity(k entityKind, name string, update bool, body any) int {
	verb, done := "create", "created"
	path := k.path(name)
	if update {
		verb, done, path = "update", "updated", path+"?overwrite=true"
	}
	var raw json.RawMessage
	if err := c.c.do(c.ctx, "PUT", path, body, &raw); err != nil {
		return c.fail(fmt.Sprintf("%s %s '%s'", verb, k.singular, name), err)
	}
	if *c.jsonOut {
		c.printJSON(raw)
	}
	c.ok("%s %s %s", done, k.singular, name)
	return 0
}

// getRaw fetches the named entity's JSON.
func (c *wskCmd) getRaw(k entityKind, name string) (json.RawMessage, error) {
	var raw json.RawMessage
	err := c.c.do(c.ctx, "GET", k.path(name), nil, &raw)
	return raw, err
}

// getEntity prints the named entity.
func (c *wskCmd) getEntity(k entityKind, name string) int {
	raw, err := c.getRaw(k, name)
	if err != nil {
		return c.fail(fmt.Sprintf("get %s '%s'", k.singular, name), err)
	}
	c.ok("got %s %s", k.singular, name)
	c.printJSON(raw)
	return 0
}

// deleteEntity deletes the named entity.
func (c *wskCmd) deleteEntity(k entityKind, name string) int {
	var raw json.RawMessage
	if err := c.c.do(c.ctx, "DELETE", k.path(name), nil, &raw); err != nil {
		return c.fail(fmt.Sprintf("delete %s '%s'", k.singular, name), err)
	}
	if *c.jsonOut {
		c.printJSON(raw)
	}
	c.ok("deleted %s %s", k.singular, name)
	return 0
}

// listEntities lists a collection of the default namespace as a table of
// row(entity) (or the raw JSON).
func (c *wskCmd) listEntities(k entityKind, ns string, q url.Values, row func(e map[string]any) []string) int {
	path := k.collectionPath(ns)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var raw json.RawMessage
	if err := c.c.do(c.ctx, "GET", path, nil, &raw); err != nil {
		return c.fail("list "+k.plural, err)
	}
	if *c.jsonOut {
		c.printJSON(raw)
		return 0
	}
	var list []map[string]any
	if err := json.Unmarshal(raw, &list); err != nil {
		return c.fail("list "+k.plural, fmt.Errorf("unexpected answer: %w", err))
	}
	rows := make([][]string, 0, len(list))
	for _, e := range list {
		rows = append(rows, row(e))
	}
	c.table(k.plural, rows)
	return 0
}

// entityRow is the start of a list row: "/ns/name" and "private"/"shared".
func entityRow(e map[string]any) []string {
	vis := "private"
	if e["publish"] == true {
		vis = "shared"
	}
	return []string{"/" + str(e["namespace"]) + "/" + str(e["name"]), vis}
}

// str renders a JSON value for a table cell.
func str(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case map[string]any: // an entity reference {"namespace", "name"}
		if n, ok := x["name"].(string); ok {
			return "/" + str(x["namespace"]) + "/" + n
		}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// annotation returns the value of annotation key of an entity.
func annotation(e map[string]any, key string) (any, bool) {
	anns, _ := e["annotations"].([]any)
	for _, a := range anns {
		if m, ok := a.(map[string]any); ok && m["key"] == key {
			return m["value"], true
		}
	}
	return nil, false
}

// shortGroup expands grouped one-letter bool flags, as wsk takes them:
// "-br" is "-b -r". It applies only when a is not a flag itself and every
// letter is a bool flag.
func (c *wskCmd) shortGroup(a string) ([]string, bool) {
	if len(a) < 3 || a[0] != '-' || a[1] == '-' || strings.ContainsRune(a, '=') || c.fs.Lookup(a[1:]) != nil {
		return nil, false
	}
	var out []string
	for _, r := range a[1:] {
		f := c.fs.Lookup(string(r))
		if f == nil {
			return nil, false
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
			return nil, false
		}
		out = append(out, "-"+string(r))
	}
	return out, true
}
