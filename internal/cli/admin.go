package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"time"
)

const namespaceUsage = `Usage:
  clemmys namespace list                your namespaces (those of your credential)
  clemmys namespace list --admin        every namespace                       (admin)
  clemmys namespace create NAME         create a namespace, print its uuid:key (admin)
  clemmys namespace rotate NAME         give it a new key; the old one stops   (admin)
  clemmys namespace delete NAME         delete its credential                  (admin)

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
