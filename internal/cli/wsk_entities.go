package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

const triggerUsage = `Usage:
  clemmys trigger create NAME [-p KEY VALUE]... [-P FILE] [-a KEY VALUE]...
  clemmys trigger update NAME [-p KEY VALUE]... [-P FILE] [-a KEY VALUE]...
  clemmys trigger get NAME
  clemmys trigger list [--limit N] [--skip N]
  clemmys trigger delete NAME
  clemmys trigger fire NAME [-p KEY VALUE]... [-P FILE]   run the actions of its active rules

Every verb takes --json (print the API's JSON), --apihost, --auth,
--insecure; -h lists them.
`

const ruleUsage = `Usage:
  clemmys rule create NAME TRIGGER ACTION   fire ACTION when TRIGGER fires (active at once)
  clemmys rule update NAME TRIGGER ACTION
  clemmys rule get NAME
  clemmys rule list [--limit N] [--skip N]
  clemmys rule delete NAME
  clemmys rule enable NAME
  clemmys rule disable NAME

Every verb takes --json (print the API's JSON), --apihost, --auth,
--insecure; -h lists them.
`

const packageUsage = `Usage:
  clemmys package create NAME [--shared yes|no] [-p KEY VALUE]... [-P FILE] [-a KEY VALUE]...
  clemmys package update NAME [--shared yes|no] [-p KEY VALUE]... [-P FILE] [-a KEY VALUE]...
  clemmys package bind PACKAGE NAME [-p KEY VALUE]... [-P FILE] [-a KEY VALUE]...
                                  a binding NAME of PACKAGE (yours or /NS/PACKAGE, shared) with its own parameters
  clemmys package get NAME
  clemmys package list [/NAMESPACE] [--limit N] [--skip N]   (another namespace: its shared packages)
  clemmys package delete NAME

Actions of a package are named PACKAGE/ACTION. Every verb takes --json
(print the API's JSON), --apihost, --auth, --insecure; -h lists them.
`

// commonVerbs are get, list and delete of kind k; row renders a list row.
func commonVerbs(k entityKind, row func(e map[string]any) []string) map[string]wskVerb {
	return map[string]wskVerb{
		"get":    func(c *wskCmd, a []string) int { return c.oneName(a, k, c.getEntity) },
		"delete": func(c *wskCmd, a []string) int { return c.oneName(a, k, c.deleteEntity) },
		"list": func(c *wskCmd, a []string) int {
			query := c.paging(30)
			if !c.parse(a, "[/NAMESPACE]", 0, 1) {
				return c.exit
			}
			ns := "_"
			if len(c.args) == 1 {
				ns = strings.Trim(c.args[0], "/")
			}
			return c.listEntities(k, ns, query(), row)
		},
	}
}

func cmdTrigger(args []string, stdout, stderr io.Writer) int {
	verbs := commonVerbs(kindTrigger, entityRow)
	verbs["create"] = func(c *wskCmd, a []string) int { return triggerPut(c, a, false) }
	verbs["update"] = func(c *wskCmd, a []string) int { return triggerPut(c, a, true) }
	verbs["fire"] = triggerFire
	return runNoun("trigger", triggerUsage, verbs, args, stdout, stderr)
}

func triggerPut(c *wskCmd, args []string, update bool) int {
	c.withParams()
	c.withAnnotations()
	if !c.parse(args, "NAME", 1, 1) {
		return c.exit
	}
	body := map[string]any{}
	if err := c.entityBody(body); err != nil {
		return c.fail("read the parameters", err)
	}
	return c.putEntity(kindTrigger, c.args[0], update, body)
}

func triggerFire(c *wskCmd, args []string) int {
	name, params, ok := c.parseNameParams(args)
	if !ok {
		return c.exit
	}
	status, raw, err := c.c.call(c.ctx, "POST", kindTrigger.path(name), params)
	if err != nil {
		return c.fail(fmt.Sprintf("fire trigger '%s'", name), err)
	}
	if *c.jsonOut {
		if status != http.StatusNoContent {
			c.printJSON(json.RawMessage(raw))
		}
		return 0
	}
	var act struct {
		ActivationID string `json:"activationId"`
	}
	if json.Unmarshal(raw, &act) != nil || act.ActivationID == "" {
		c.ok("triggered %s (no active rule)", qualify(name))
		return 0
	}
	c.ok("triggered %s with id %s", qualify(name), act.ActivationID)
	return 0
}

func cmdRule(args []string, stdout, stderr io.Writer) int {
	verbs := commonVerbs(kindRule, func(e map[string]any) []string {
		return append(entityRow(e), str(e["status"]))
	})
	verbs["create"] = func(c *wskCmd, a []string) int { return rulePut(c, a, false) }
	verbs["update"] = func(c *wskCmd, a []string) int { return rulePut(c, a, true) }
	verbs["enable"] = func(c *wskCmd, a []string) int { return ruleStatus(c, a, "active", "enable", "enabled") }
	verbs["disable"] = func(c *wskCmd, a []string) int { return ruleStatus(c, a, "inactive", "disable", "disabled") }
	return runNoun("rule", ruleUsage, verbs, args, stdout, stderr)
}

func rulePut(c *wskCmd, args []string, update bool) int {
	c.withAnnotations()
	if !c.parse(args, "NAME TRIGGER ACTION", 3, 3) {
		return c.exit
	}
	body := map[string]any{"trigger": qualify(c.args[1]), "action": qualify(c.args[2])}
	if err := c.entityBody(body); err != nil {
		return c.fail("", err)
	}
	return c.putEntity(kindRule, c.args[0], update, body)
}

func ruleStatus(c *wskCmd, args []string, status, verb, done string) int {
	if !c.parse(args, "NAME", 1, 1) {
		return c.exit
	}
	name := c.args[0]
	var raw json.RawMessage
	if err := c.c.do(c.ctx, "POST", kindRule.path(name), map[string]string{"status": status}, &raw); err != nil {
		return c.fail(fmt.Sprintf("%s rule '%s'", verb, name), err)
	}
	if *c.jsonOut {
		c.printJSON(raw)
	}
	c.ok("%s rule %s", done, name)
	return 0
}

func cmdPackage(args []string, stdout, stderr io.Writer) int {
	verbs := commonVerbs(kindPackage, packageRow)
	verbs["bind"] = packageBind
	verbs["create"] = func(c *wskCmd, a []string) int { return packagePut(c, a, false) }
	verbs["update"] = func(c *wskCmd, a []string) int { return packagePut(c, a, true) }
	return runNoun("package", packageUsage, verbs, args, stdout, stderr)
}

func packagePut(c *wskCmd, args []string, update bool) int {
	c.withParams()
	c.withAnnotations()
	shared := c.fs.String("shared", "", "`yes` to share the package with every namespace, no to keep it private (default on create: no)")
	if !c.parse(args, "NAME", 1, 1) {
		return c.exit
	}
	body := map[string]any{}
	switch strings.ToLower(*shared) {
	case "":
	case "yes", "true":
		body["publish"] = true
	case "no", "false":
		body["publish"] = false
	default:
		return c.usageError("--shared takes yes or no, not %q", *shared)
	}
	if err := c.entityBody(body); err != nil {
		return c.fail("read the parameters", err)
	}
	return c.putEntity(kindPackage, c.args[0], update, body)
}

// packageRow is a package list row: name, private/shared, and "binding"
// for a binding (with what it binds).
func packageRow(e map[string]any) []string {
	row := entityRow(e)
	if b, ok := e["binding"].(map[string]any); ok && len(b) > 0 {
		row = append(row, "binding → "+str(b))
	}
	return row
}

// packageBind creates a binding NAME of PACKAGE (wsk package bind).
func packageBind(c *wskCmd, args []string) int {
	c.withParams()
	c.withAnnotations()
	if !c.parse(args, "PACKAGE NAME", 2, 2) {
		return c.exit
	}
	ns, pkg := splitName(c.args[0])
	if pkg == "" || strings.Contains(pkg, "/") {
		return c.usageError("PACKAGE is a package: NAME or /NAMESPACE/NAME, not %q", c.args[0])
	}
	body := map[string]any{"binding": map[string]string{"namespace": ns, "name": pkg}}
	if err := c.entityBody(body); err != nil {
		return c.fail("read the parameters", err)
	}
	return c.putEntity(kindPackage, c.args[1], false, body)
}
