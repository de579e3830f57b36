package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestRunUsage(t *testing.T) {
	cases := []struct {
		args []string
		code int
		out  string
	}{
		{nil, 2, "Usage"},
		{[]string{"nope"}, 2, "unknown command"},
		{[]string{"version"}, 0, "clemmys"},
		{[]string{"help"}, 0, "policy"},
		{[]string{"policy"}, 0, "clemmys policy allow"},
		{[]string{"policy", "frobnicate", "--apihost", "https://127.0.0.1:1", "--auth", "u:k"}, 1, ""},
		{[]string{"policy", "allow", "--apihost", "https://127.0.0.1:1", "--auth", "u:k", "not-hex"}, 1, "not a measurement"},
		{[]string{"policy", "allow", "--apihost", "https://127.0.0.1:1", "--auth", "u:k", "abcd"}, 1, "not a measurement"},
	}
	for _, c := range cases {
		var out, errs bytes.Buffer
		if code := Run(c.args, &out, &errs); code != c.code || !strings.Contains(out.String()+errs.String(), c.out) {
			t.Errorf("Run(%q) = %d, %q %q; want %d containing %q", c.args, code, out.String(), errs.String(), c.code, c.out)
		}
	}
}

func TestResolveConfig(t *testing.T) {
	dir := t.TempDir()
	props := filepath.Join(dir, "props")
	if err := os.WriteFile(props, []byte("# comment\nAPIHOST=127.0.0.1:3233\nAUTH=u:k\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WSK_CONFIG_FILE", props)
	t.Setenv("__OW_API_HOST", "")
	t.Setenv("__OW_API_KEY", "")
	c := &apiConfig{}
	if err := c.resolve(dir); err != nil {
		t.Fatal(err)
	}
	if c.Host != "https://127.0.0.1:3233" || c.Auth != "u:k" {
		t.Fatalf("%+v", c)
	}
	// The environment wins over the file.
	t.Setenv("__OW_API_KEY", "env:key")
	c = &apiConfig{}
	if err := c.resolve(dir); err != nil || c.Auth != "env:key" {
		t.Fatalf("%+v %v", c, err)
	}
	// Nothing configured: a helpful error.
	t.Setenv("WSK_CONFIG_FILE", filepath.Join(dir, "missing"))
	t.Setenv("__OW_API_KEY", "")
	c = &apiConfig{}
	if err := c.resolve(t.TempDir()); err == nil || !strings.Contains(err.Error(), "clemmys up") {
		t.Fatalf("%v", err)
	}
}

func TestNewLogger(t *testing.T) {
	var b strings.Builder
	log, err := newLogger(&b, "json", "warn")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "activation", "abc")
	if got := b.String(); strings.Contains(got, "hidden") || !strings.Contains(got, `"msg":"shown","activation":"abc"`) {
		t.Fatalf("json at warn: %q", got)
	}
	for _, bad := range [][2]string{{"xml", "info"}, {"text", "loud"}} {
		if _, err := newLogger(&b, bad[0], bad[1]); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// Every command the usage lists is offered by shell completion, and each
// one completion offers is a command.
func TestCompletionCoversCommands(t *testing.T) {
	re := regexp.MustCompile(`(?m)^  clemmys ([a-z-]+(?:\|[a-z-]+)*)`)
	for _, m := range re.FindAllStringSubmatch(usage, -1) {
		for _, c := range strings.Split(m[1], "|") {
			if _, ok := completionWords[c]; !ok {
				t.Errorf("completion does not offer %q", c)
			}
		}
	}
	for c := range completionWords {
		var out, errs strings.Builder
		Run([]string{c, "-h"}, &out, &errs)
		if strings.Contains(errs.String(), "unknown command") {
			t.Errorf("completion offers %q, not a command", c)
		}
	}
}
