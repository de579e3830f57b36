package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
)

const actionUsage = `Usage:
  clemmys action create NAME FILE [flags]        deploy FILE: a WebAssembly module (.wasm),
                                                 JavaScript (.js) or a zipped JS action (.zip)
  clemmys action create NAME --sequence A,B,C    create a sequence of actions
  clemmys action update NAME [FILE] [flags]      replace it (create if absent)
  clemmys action get NAME [--summary] [--url] [--save | --save-as FILE]
  clemmys action list [--limit N] [--skip N]
  clemmys action delete NAME
  clemmys action invoke NAME [-p KEY VALUE]... [-P FILE] [--blocking|-b] [--result|-r]

Flags of create/update: -p KEY VALUE, -P FILE (default parameters),
-a KEY VALUE (annotations), --kind KIND (wasm, nodejs:default, nodejs:20,
nodejs:22; default: from the file), --main NAME (a JS entry point),
--web true|false|raw (a web action), --web-secure SECRET|true|false,
--suite x25519|xwing (how its invocations are sealed; xwing is
post-quantum), --timeout MS, --memory MB, --logsize MB.
NAME is "hello", "/NAMESPACE/hello" or "PACKAGE/hello". Every verb takes
--json (print the API's JSON), --apihost, --auth, --insecure; -h lists them.
`

func cmdAction(args []string, stdout, stderr io.Writer) int {
	verbs := commonVerbs(kindAction, actionRow)
	verbs["create"] = func(c *wskCmd, a []string) int { return actionPut(c, a, false) }
	verbs["update"] = func(c *wskCmd, a []string) int { return actionPut(c, a, true) }
	verbs["get"] = actionGet
	verbs["invoke"] = actionInvoke
	return runNoun("action", actionUsage, verbs, args, stdout, stderr)
}

func actionPut(c *wskCmd, args []string, update bool) int {
	c.withParams()
	c.withAnnotations()
	seq := c.fs.String("sequence", "", "create a sequence of the comma-separated `ACTIONS` (no FILE)")
	timeout := c.intFlag(0, "time limit in `MS` (100 to 300000)", "timeout", "t")
	memory := c.intFlag(0, "memory limit in `MB` (128 to 512)", "memory", "m")
	logsize := c.intFlag(0, "log size limit in `MB` (0 to 10)", "logsize", "l")
	kind := c.fs.String("kind", "", "the `KIND` of FILE: wasm, nodejs:default, nodejs:20 or nodejs:22 (default: from its name or content)")
	main := c.fs.String("main", "", "the `NAME` of a JavaScript action's entry point (default: main)")
	web := c.fs.String("web", "", "`true`, false or raw: make it a web action (annotations web-export, raw-http, final)")
	webSecure := c.fs.String("web-secure", "", "`SECRET`: a web action requires the header X-Require-Whisk-Auth: SECRET (true: credentials; false: none)")
	suite := c.fs.String("suite", "", "the `SUITE` its invocations are sealed with: x25519 (the default) or xwing (post-quantum hybrid ML-KEM-768 + X25519); annotation suite")
	if !c.parse(args, "NAME FILE | NAME --sequence A,B,C", 1, 2) {
		return c.exit
	}
	name := c.args[0]
	body := map[string]any{}
	guessed := false // the kind of FILE is a guess: wasm
	flagAnns, err := webAnnotations(*web, *webSecure)
	if err != nil {
		return c.usageError("%v", err)
	}
	switch strings.ToLower(*suite) {
	case "":
	case "x25519", "xwing":
		flagAnns = append(flagAnns, keyValue{"suite", strings.ToLower(*suite)})
	default:
		return c.usageError("--suite takes x25519 or xwing, not %q", *suite)
	}
	for _, kv := range flagAnns {
		if !slices.ContainsFunc(c.annots, func(a keyValue) bool { return a.Key == kv.Key }) {
			c.annots = append(c.annots, kv)
		}
	}
	switch {
	case *seq != "" && len(c.args) == 2:
		return c.usageError("give either FILE or --sequence, not both")
	case *seq != "" && (*kind != "" || *main != ""):
		return c.usageError("--kind and --main are for an action with code, not a sequence")
	case *seq != "":
		var comps []string
		for _, s := range strings.Split(*seq, ",") {
			if s = strings.TrimSpace(s); s != "" {
				comps = append(comps, qualify(s))
			}
		}
		body["exec"] = map[string]any{"kind": "sequence", "components": comps}
	case len(c.args) == 2:
		exec, g, err := execFromFile(c.args[1], *kind, *main)
		if err != nil {
			return c.fail("read the code", err)
		}
		body["exec"], guessed = exec, g
	case *kind != "" || *main != "":
		return c.usageError("--kind and --main need the FILE of the code")
	case !update:
		return c.usageError("action create needs FILE.wasm (a WebAssembly module), FILE.js or FILE.zip (JavaScript), or --sequence A,B,C")
	}
	limits := map[string]any{}
	if c.isSet("timeout", "t") {
		limits["timeout"] = *timeout
	}
	if c.isSet("memory", "m") {
		limits["memory"] = *memory
	}
	if c.isSet("logsize", "l") {
		limits["logs"] = *logsize
	}
	if len(limits) > 0 {
		body["limits"] = limits
	}
	if err := c.entityBody(body); err != nil {
		return c.fail("read the parameters", err)
	}
	rc := c.putEntity(kindAction, name, update, body)
	if rc != 0 && guessed {
		fmt.Fprintf(c.stderr, "(%s was sent as a WebAssembly module: its name ends neither in .wasm, .js nor .zip; pass --kind for JavaScript)\n", c.args[1])
	}
	return rc
}

func actionGet(c *wskCmd, args []string) int {
	summary := c.boolFlag("print a summary instead of the JSON", "summary", "s")
	webAddr := c.boolFlag("print the action's web address (/api/v1/web/...)", "url", "r")
	save := c.boolFlag("save the action's code to NAME.wasm, NAME.js or NAME.zip in the current directory", "save")
	saveAs := c.fs.String("save-as", "", "save the action's code to `FILE`")
	if !c.parse(args, "NAME", 1, 1) {
		return c.exit
	}
	name := c.args[0]
	switch {
	case *save || *saveAs != "":
		return actionSave(c, name, *saveAs)
	case *webAddr:
		return actionURL(c, name)
	}
	if !*summary || *c.jsonOut {
		return c.getEntity(kindAction, name)
	}
	raw, err := c.getRaw(kindAction, name)
	if err != nil {
		return c.fail(fmt.Sprintf("get action '%s'", name), err)
	}
	var a struct {
		Namespace, Name, Version string
		Exec                     struct {
			Kind       string   `json:"kind"`
			Digest     string   `json:"digest"`
			Components []string `json:"components"`
		} `json:"exec"`
		Parameters []keyValue     `json:"parameters"`
		Limits     map[string]any `json:"limits"`
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		return c.fail(fmt.Sprintf("get action '%s'", name), err)
	}
	fmt.Fprintf(c.stdout, "action /%s/%s (version %s, %s)\n", a.Namespace, a.Name, a.Version, a.Exec.Kind)
	if a.Exec.Digest != "" {
		fmt.Fprintf(c.stdout, "   code: sha256 %s\n", a.Exec.Digest)
	}
	if len(a.Exec.Components) > 0 {
		fmt.Fprintf(c.stdout, "   components: %s\n", strings.Join(a.Exec.Components, ", "))
	}
	if len(a.Parameters) == 0 {
		fmt.Fprintln(c.stdout, "   (parameters: none defined)")
	} else {
		keys := make([]string, len(a.Parameters))
		for i, p := range a.Parameters {
			keys[i] = p.Key
		}
		fmt.Fprintf(c.stdout, "   (parameters: %s)\n", strings.Join(keys, ", "))
	}
	fmt.Fprintf(c.stdout, "   limits: timeout %s ms, memory %s MB, logs %s MB\n",
		str(a.Limits["timeout"]), str(a.Limits["memory"]), str(a.Limits["logs"]))
	return 0
}

// actionURL prints the address of the action as a web action.
func actionURL(c *wskCmd, name string) int {
	var raw json.RawMessage
	if err := c.c.do(c.ctx, "GET", kindAction.path(name)+"?code=false", nil, &raw); err != nil {
		return c.fail(fmt.Sprintf("get action '%s'", name), err)
	}
	var a struct{ Namespace, Name string }
	if err := json.Unmarshal(raw, &a); err != nil || a.Namespace == "" || a.Name == "" {
		return c.fail(fmt.Sprintf("get action '%s'", name), fmt.Errorf("unexpected answer: %v", err))
	}
	u := webURL(c.cfg.Host, a.Namespace, a.Name)
	if *c.jsonOut {
		c.printJSON(map[string]string{"url": u})
		return 0
	}
	c.ok("got action %s", name)
	fmt.Fprintln(c.stdout, u)
	return 0
}

// actionSave writes the action's code to file, or to NAME and the
// extension of its kind in the current directory; it never overwrites a
// file.
func actionSave(c *wskCmd, name, file string) int {
	var raw json.RawMessage
	if err := c.c.do(c.ctx, "GET", kindAction.path(name)+"?code=true", nil, &raw); err != nil {
		return c.fail(fmt.Sprintf("get action '%s'", name), err)
	}
	code, ext, err := savedCode(raw)
	if err != nil {
		return c.fail(fmt.Sprintf("save the code of action '%s'", name), err)
	}
	if file == "" {
		_, rest := splitName(name)
		file = path.Base(rest) + ext
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			err = fmt.Errorf("%s exists: remove it or pass --save-as FILE", file)
		}
		return c.fail(fmt.Sprintf("save the code of action '%s'", name), err)
	}
	_, err = f.Write(code)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return c.fail(fmt.Sprintf("save the code of action '%s'", name), err)
	}
	c.ok("saved action code to %s", file)
	return 0
}

// actionRow is a row of `action list`: name, visibility, kind.
func actionRow(e map[string]any) []string {
	kind, _ := e["exec"].(map[string]any)["kind"].(string)
	if kind == "" {
		k, _ := annotation(e, "exec")
		kind = str(k)
	}
	return append(entityRow(e), kind)
}

func actionInvoke(c *wskCmd, args []string) int {
	blocking := c.boolFlag("wait for the result", "blocking", "b")
	result := c.boolFlag("wait and print only the result (implies --blocking)", "result", "r")
	seal := c.boolFlag("seal the parameters end to end on this machine (verified attestation, opened and verified result; docs/verify.md)", "seal")
	expect := c.fs.String("expect", "", "with --seal: JSON file of what you pin (as for clemmys attest)")
	name, params, ok := c.parseNameParams(args)
	if !ok {
		return c.exit
	}
	if *seal {
		return c.invokeSealed(name, params, *result, *expect)
	}
	q := url.Values{}
	if *blocking || *result {
		q.Set("blocking", "true")
	}
	if *result {
		q.Set("result", "true")
	}
	path := kindAction.path(name)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	status, raw, err := c.c.call(c.ctx, "POST", path, params)
	if err != nil {
		return c.invokeFailed(name, err)
	}
	if *c.jsonOut {
		c.printJSON(json.RawMessage(raw))
		return 0
	}
	if *result && status == http.StatusOK {
		c.printJSON(json.RawMessage(raw))
		return 0
	}
	var act struct {
		ActivationID string `json:"activationId"`
	}
	_ = json.Unmarshal(raw, &act)
	c.ok("invoked %s with id %s", qualify(name), act.ActivationID)
	switch {
	case status == http.StatusAccepted && (*blocking || *result):
		fmt.Fprintf(c.stdout, "the action is still running: `clemmys activation get %s` shows it when it is done\n", act.ActivationID)
	case status == http.StatusOK:
		c.printJSON(json.RawMessage(raw))
	}
	return 0
}

// invokeFailed reports a failed invocation. A blocking invocation of an
// action that failed answers its activation (or, with --result, its
// result): it is printed, with the action's error.
func (c *wskCmd) invokeFailed(name string, err error) int {
	ae, ok := errors.AsType[*apiError](err)
	var body map[string]any
	if !ok || ae.Code != "" || json.Unmarshal(ae.Body, &body) != nil {
		return c.fail(fmt.Sprintf("invoke action '%s'", name), err)
	}
	c.printJSON(json.RawMessage(ae.Body))
	res := body
	if resp, ok := body["response"].(map[string]any); ok {
		res, _ = resp["result"].(map[string]any)
		fmt.Fprintf(c.stderr, "error: the action %s failed (%s, activation %s): %s\n",
			qualify(name), str(resp["status"]), str(body["activationId"]), str(res["error"]))
		return 1
	}
	fmt.Fprintf(c.stderr, "error: the action %s failed: %s\n", qualify(name), str(res["error"]))
	return 1
}
