package cli

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

const propertyUsage = `Usage:
  clemmys property get [--apihost] [--auth] [--namespace] [--all]   show the saved properties
  clemmys property set [--apihost HOST] [--auth UUID:KEY] [--namespace NS]
  clemmys property unset [--apihost] [--auth] [--namespace]

Properties are kept as wsk keeps them: in $WSK_CONFIG_FILE, else
~/.wskprops (APIHOST=, AUTH=, NAMESPACE= lines; mode 0600). Every client
command reads them when --apihost and --auth are not given.
`

// wskProps are the properties `property` manages: flag name → file key.
var wskProps = []struct{ flag, key, label string }{
	{"apihost", "APIHOST", "whisk API host"},
	{"auth", "AUTH", "whisk auth"},
	{"namespace", "NAMESPACE", "whisk namespace"},
}

// propsPath is the property file wsk uses.
func propsPath() (string, error) {
	if f := os.Getenv("WSK_CONFIG_FILE"); f != "" {
		return f, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home directory for ~/.wskprops (set WSK_CONFIG_FILE): %w", err)
	}
	return filepath.Join(home, ".wskprops"), nil
}

func cmdProperty(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, propertyUsage)
		return 0
	}
	verb := args[0]
	fs := flag.NewFlagSet("clemmys property "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path, err := propsPath()
	if err != nil {
		fmt.Fprintf(stderr, "clemmys property: %v\n", err)
		return 1
	}
	switch verb {
	case "set":
		vals := map[string]*string{}
		for _, p := range wskProps {
			vals[p.flag] = fs.String(p.flag, "", p.label)
		}
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		set := map[string]string{}
		fs.Visit(func(f *flag.Flag) {
			for _, p := range wskProps {
				if p.flag == f.Name {
					set[p.key] = *vals[p.flag]
				}
			}
		})
		if len(set) == 0 || fs.NArg() > 0 {
			fmt.Fprint(stderr, "clemmys property set: give at least one of --apihost, --auth, --namespace\n")
			return 2
		}
		if err := updateProps(path, set, nil); err != nil {
			fmt.Fprintf(stderr, "clemmys property set: %v\n", err)
			return 1
		}
		for _, p := range wskProps {
			if v, ok := set[p.key]; ok {
				if p.key == "AUTH" {
					v = "set"
				}
				fmt.Fprintf(stdout, "ok: %s %s\n", p.label, v)
			}
		}
		return 0
	case "unset":
		flags := map[string]*bool{}
		for _, p := range wskProps {
			flags[p.flag] = fs.Bool(p.flag, false, "unset the "+p.label)
		}
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		var drop []string
		for _, p := range wskProps {
			if *flags[p.flag] {
				drop = append(drop, p.key)
			}
		}
		if len(drop) == 0 {
			fmt.Fprint(stderr, "clemmys property unset: give at least one of --apihost, --auth, --namespace\n")
			return 2
		}
		if err := updateProps(path, nil, drop); err != nil {
			fmt.Fprintf(stderr, "clemmys property unset: %v\n", err)
			return 1
		}
		for _, p := range wskProps {
			if slices.Contains(drop, p.key) {
				fmt.Fprintf(stdout, "ok: %s unset\n", p.label)
			}
		}
		return 0
	case "get":
		flags := map[string]*bool{}
		for _, p := range wskProps {
			flags[p.flag] = fs.Bool(p.flag, false, "show the "+p.label)
		}
		all := fs.Bool("all", false, "show every property")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		props, err := readProps(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stderr, "clemmys property get: %v\n", err)
			return 1
		}
		any := false
		for _, p := range wskProps {
			any = any || *flags[p.flag]
		}
		for _, p := range wskProps {
			if *all || !any || *flags[p.flag] {
				fmt.Fprintf(stdout, "%s\t\t%s\n", p.label, props[p.key])
			}
		}
		if *all || !any {
			fmt.Fprintf(stdout, "clemmys version\t\t%s\n", versionString())
		}
		return 0
	default:
		fmt.Fprintf(stderr, "clemmys property: unknown verb %q\n\n%s", verb, propertyUsage)
		return 2
	}
}

// updateProps rewrites the property file with set's keys set and drop's
// removed, keeping every other line as it was, atomically, mode 0600.
func updateProps(path string, set map[string]string, drop []string) error {
	var lines []string
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	done := map[string]bool{}
	out := lines[:0]
	for _, line := range lines {
		k, _, ok := strings.Cut(strings.TrimSpace(line), "=")
		k = strings.TrimSpace(k)
		if ok && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			if slices.Contains(drop, k) {
				continue
			}
			if v, ok := set[k]; ok {
				if !done[k] {
					out = append(out, k+"="+v)
					done[k] = true
				}
				continue
			}
		}
		out = append(out, line)
	}
	for _, p := range wskProps {
		if v, ok := set[p.key]; ok && !done[p.key] {
			out = append(out, p.key+"="+v)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".wskprops-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(strings.Join(out, "\n") + "\n"); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
