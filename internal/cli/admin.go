package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const namespaceUsage = `Usage:
  clemmys namespace list                your namespaces (those of your credential)
  clemmys namespace list --admin        every namespace                       (admin)
  clemmys namespace create NAME         create a namespace, print its uuid:key (admin)
  clemmys namespace rotate NAME         give it a new key; the old one stops   (admin)
  clemmys namespace delete NAME         delete its credential                  (admin)
  clemmys namespace get [NS]            everything in your namespace (actions, packages, triggers, rules)
  clemmys namespace limits NS [flags]   show or set its limits and retention   (admin)
      --invocations-per-minute N  --concurrent N  --fires-per-minute N   (-1: unlimited)
      --timeout MS  --memory MB  --logs MB         ceilings of the action limits
      --retention-age DURATION (7d, 36h)  --retention-count N    activation records kept
      --reset                                      back to the platform's defaults

Admin verbs use the admin API of a local platform: its credential is read
from DATA_DIR/admin-credential and its address from DATA_DIR/wskprops
(--data-dir DIR, default $CLEMMYS_DATA_DIR or ~/.clemmys; --apihost and
--auth admin:KEY override them). Every verb takes --json (print the API's
JSON); -h lists the flags.
`

const adminPath = "/admin/v1/namespaces"

func cmdNamespace(args []string, stdout, stderr io.Writer) int {
	admin := func(run wskVerb) wskVerb {
		return func(c *wskCmd, a []string) int {
			c.admin = true
			return run(c, a)
		}
	}
	return runNoun("namespace", namespaceUsage, map[string]wskVerb{
		"list":   namespaceList,
		"create": admin(namespaceCreate),
		"rotate": admin(namespaceRotate),
		"delete": admin(namespaceDelete),
		"limits": admin(namespaceLimits),
		"get":    namespaceGet,
	}, args, stdout, stderr)
}

func namespaceList(c *wskCmd, args []string) int {
	c.adminFlag = c.fs.Bool("admin", false, "list every namespace, with the admin credential")
	if !c.parse(args, "", 0, 0) {
		return c.exit
	}
	path := "/api/v1/namespaces"
	if *c.adminFlag {
		path = adminPath
	}
	var raw json.RawMessage
	if err := c.c.do(c.ctx, "GET", path, nil, &raw); err != nil {
		return c.fail("list namespaces", err)
	}
	if *c.jsonOut {
		c.printJSON(raw)
		return 0
	}
	var rows [][]string
	if *c.adminFlag {
		var list []struct {
			Namespace string    `json:"namespace"`
			UUID      string    `json:"uuid"`
			Created   time.Time `json:"created"`
		}
		if err := json.Unmarshal(raw, &list); err != nil {
			return c.fail("list namespaces", err)
		}
		rows = append(rows, []string{"namespace", "uuid", "key issued"})
		for _, n := range list {
			rows = append(rows, []string{n.Namespace, n.UUID, n.Created.Local().Format(time.DateTime)})
		}
	} else {
		var list []string
		if err := json.Unmarshal(raw, &list); err != nil {
			return c.fail("list namespaces", err)
		}
		rows = append(rows, []string{"namespaces"})
		for _, n := range list {
			rows = append(rows, []string{n})
		}
	}
	c.table("", rows)
	return 0
}

// printCredential prints the credential of a create or rotate answer.
func (c *wskCmd) printCredential(raw json.RawMessage) int {
	if *c.jsonOut {
		c.printJSON(raw)
		return 0
	}
	var cred struct {
		Auth string `json:"auth"`
	}
	if err := json.Unmarshal(raw, &cred); err != nil || cred.Auth == "" {
		return c.fail("read the credential", fmt.Errorf("unexpected answer %s", raw))
	}
	fmt.Fprintln(c.stdout, cred.Auth)
	return 0
}

func namespaceCreate(c *wskCmd, args []string) int {
	if !c.parse(args, "NAME", 1, 1) {
		return c.exit
	}
	var raw json.RawMessage
	if err := c.c.do(c.ctx, "POST", adminPath, map[string]string{"name": c.args[0]}, &raw); err != nil {
		return c.fail(fmt.Sprintf("create namespace '%s'", c.args[0]), err)
	}
	return c.printCredential(raw)
}

func namespaceRotate(c *wskCmd, args []string) int {
	if !c.parse(args, "NAME", 1, 1) {
		return c.exit
	}
	var raw json.RawMessage
	if err := c.c.do(c.ctx, "POST", adminPath+"/"+url.PathEscape(c.args[0])+"/rotate", nil, &raw); err != nil {
		return c.fail(fmt.Sprintf("rotate the key of namespace '%s'", c.args[0]), err)
	}
	if !*c.jsonOut {
		fmt.Fprintf(c.stderr, "the previous key of %s no longer works; its new credential:\n", c.args[0])
	}
	return c.printCredential(raw)
}

func namespaceDelete(c *wskCmd, args []string) int {
	if !c.parse(args, "NAME", 1, 1) {
		return c.exit
	}
	name := c.args[0]
	var raw json.RawMessage
	if err := c.c.do(c.ctx, "DELETE", adminPath+"/"+url.PathEscape(name), nil, &raw); err != nil {
		return c.fail(fmt.Sprintf("delete namespace '%s'", name), err)
	}
	if *c.jsonOut {
		c.printJSON(raw)
		return 0
	}
	c.ok("deleted namespace %s: its credential no longer works", name)
	fmt.Fprintf(c.stdout, "note: its actions, packages, triggers, rules, activations and policy stay in the store,\n"+
		"unreachable. Creating a namespace named %s again makes them reachable to the new credential.\n", name)
	return 0
}

// namespaceLimits shows or sets a namespace's limits (admin API
// /admin/v1/namespaces/NS/limits): every gateway enforces them from the
// next request on.
func namespaceLimits(c *wskCmd, args []string) int {
	ints := []struct{ flag, field, usage string }{
		{"invocations-per-minute", "invocationsPerMinute", "invocations per minute (`N`; -1: unlimited)"},
		{"concurrent", "concurrentInvocations", "invocations in flight (`N`; -1: unlimited)"},
		{"fires-per-minute", "firesPerMinute", "trigger fires per minute (`N`; -1: unlimited)"},
		{"timeout", "maxActionTimeout", "ceiling of the actions' time limit, in `MS`"},
		{"memory", "maxActionMemory", "ceiling of the actions' memory limit, in `MB`"},
		{"logs", "maxActionLogs", "ceiling of the actions' log size, in `MB`"},
		{"retention-count", "activationRetentionCount", "keep at most the newest `N` activation records"},
	}
	vals := map[string]*int{}
	for _, f := range ints {
		vals[f.flag] = c.intFlag(0, f.usage, f.flag)
	}
	age := c.fs.String("retention-age", "", "delete activation records older than `DURATION` (7d, 36h, 90m; default 7d)")
	reset := c.boolFlag("reset all the namespace's limits to the platform's defaults", "reset")
	if !c.parse(args, "NS [flags]", 1, 1) {
		return c.exit
	}
	ns := c.args[0]
	path := adminPath + "/" + url.PathEscape(ns) + "/limits"
	body := map[string]any{}
	for _, f := range ints {
		if c.isSet(f.flag) {
			body[f.field] = *vals[f.flag]
		}
	}
	if c.isSet("retention-age") {
		d, err := parseDays(*age)
		if err != nil {
			return c.usageError("--retention-age: %v", err)
		}
		body["activationRetentionSeconds"] = int64(d / time.Second)
	}
	method, what := "GET", "get the limits of namespace '%s'"
	var send any
	switch {
	case *reset && len(body) > 0:
		return c.usageError("--reset takes no other limit")
	case *reset:
		method, what = "DELETE", "reset the limits of namespace '%s'"
	case len(body) > 0:
		method, what, send = "PUT", "set the limits of namespace '%s'", body
	}
	var raw json.RawMessage
	if err := c.c.do(c.ctx, method, path, send, &raw); err != nil {
		return c.fail(fmt.Sprintf(what, ns), err)
	}
	if *c.jsonOut {
		c.printJSON(raw)
		return 0
	}
	var v struct {
		Set       map[string]any `json:"set"`
		Effective map[string]any `json:"effective"`
		Retention map[string]any `json:"retention"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return c.fail(fmt.Sprintf(what, ns), err)
	}
	if method != "GET" {
		c.ok("limits of %s stored; every gateway enforces them from the next request", ns)
	}
	rows := [][]string{{"limit", "value", ""}}
	for _, r := range []struct{ field, label, unit string }{
		{"invocationsPerMinute", "invocations per minute", ""},
		{"concurrentInvocations", "concurrent invocations", ""},
		{"firesPerMinute", "fires per minute", ""},
		{"maxActionTimeout", "max action timeout", " ms"},
		{"maxActionMemory", "max action memory", " MB"},
		{"maxActionLogs", "max action logs", " MB"},
	} {
		val, ok := v.Effective[r.field]
		s := "unlimited"
		if ok {
			s = fmt.Sprint(val) + r.unit
		}
		rows = append(rows, []string{r.label, s, ownMark(v.Set, r.field, ns)})
	}
	if secs, ok := v.Retention["activationRetentionSeconds"].(float64); ok {
		rows = append(rows, []string{"activation retention", formatAge(time.Duration(secs) * time.Second), ownMark(v.Set, "activationRetentionSeconds", ns)})
	}
	count := "no count limit"
	if n, ok := v.Retention["activationRetentionCount"]; ok {
		count = fmt.Sprint(n) + " newest"
	}
	rows = append(rows, []string{"activation records kept", count, ownMark(v.Set, "activationRetentionCount", ns)})
	c.table("limits of "+ns, rows)
	return 0
}

func ownMark(set map[string]any, field, ns string) string {
	if _, ok := set[field]; ok {
		return "(set for " + ns + ")"
	}
	return "(default)"
}

// parseDays parses a Go duration, or a whole number of days "7d".
func parseDays(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("%q is not a number of days (7d)", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a duration (7d, 36h, 90m)", s)
	}
	return d, nil
}

// formatAge prints whole days as "7d".
func formatAge(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// namespaceGet lists everything in a namespace (GET /namespaces/{ns}), as
// wsk's `namespace get` and `list` do.
func namespaceGet(c *wskCmd, args []string) int {
	if !c.parse(args, "[NS]", 0, 1) {
		return c.exit
	}
	ns := "_"
	if len(c.args) == 1 {
		ns = strings.Trim(c.args[0], "/")
	}
	var raw json.RawMessage
	if err := c.c.do(c.ctx, "GET", "/api/v1/namespaces/"+url.PathEscape(ns), nil, &raw); err != nil {
		return c.fail(fmt.Sprintf("get namespace '%s'", ns), err)
	}
	if *c.jsonOut {
		c.printJSON(raw)
		return 0
	}
	var v map[string][]map[string]any
	if err := json.Unmarshal(raw, &v); err != nil {
		return c.fail(fmt.Sprintf("get namespace '%s'", ns), err)
	}
	name := ns
	if ns == "_" {
		name = "default"
	}
	fmt.Fprintf(c.stdout, "Entities in namespace: %s\n", name)
	for _, k := range []string{"packages", "actions", "triggers", "rules"} {
		rows := [][]string{{k}}
		for _, e := range v[k] {
			rows = append(rows, entityRow(e))
		}
		c.table("", rows)
	}
	return 0
}
