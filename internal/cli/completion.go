package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// completionWords are the commands and their verbs that shell completion
// offers (TestCompletionCoversCommands keeps them in step with Run).
var completionWords = map[string][]string{
	"up": nil, "kms": nil, "controller": nil, "invoker": nil, "gateway": nil,
	"nats-config": nil, "measure": nil, "attest": nil, "init": nil, "bench": nil, "version": nil, "help": nil, "list": nil,
	"release":    {"keygen", "sign"},
	"collateral": {"fetch", "status"},
	"policy":     {"get", "allow", "remove", "set", "help"},
	"action":     {"create", "update", "get", "list", "delete", "invoke"},
	"activation": {"list", "get", "logs", "result", "poll", "verify"},
	"trigger":    {"create", "update", "get", "list", "delete", "fire"},
	"rule":       {"create", "update", "get", "list", "delete", "enable", "disable"},
	"package":    {"create", "update", "bind", "get", "list", "delete"},
	"namespace":  {"list", "get", "create", "rotate", "delete", "limits"},
	"property":   {"get", "set", "unset"},
	"completion": {"bash", "zsh"},
}

// completionFlags are offered after a client command's verb.
var completionFlags = []string{"--apihost", "--auth", "--insecure", "--cacert", "--data-dir", "--json",
	"--log-format", "--log-level", "-p", "-P", "-a", "--limit", "--skip"}

func cmdCompletion(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || (args[0] != "bash" && args[0] != "zsh") {
		fmt.Fprint(stderr, "Usage: clemmys completion bash|zsh\n\n"+
			"  bash: source <(clemmys completion bash)       (or write it to /etc/bash_completion.d/clemmys)\n"+
			"  zsh:  source <(clemmys completion zsh)        (after compinit)\n")
		return 2
	}
	var cmds []string
	for c := range completionWords {
		cmds = append(cmds, c)
	}
	slices.Sort(cmds)
	var cases strings.Builder
	for _, c := range cmds {
		if vs := completionWords[c]; len(vs) > 0 {
			fmt.Fprintf(&cases, "    %s) verbs=%q ;;\n", c, strings.Join(vs, " "))
		}
	}
	script := `# clemmys shell completion (clemmys completion ` + args[0] + `)
_clemmys() {
  local cur cmd verbs
  cur="${COMP_WORDS[COMP_CWORD]}"
  cmd="${COMP_WORDS[1]}"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=( $(compgen -W "` + strings.Join(cmds, " ") + `" -- "$cur") )
    return
  fi
  verbs=""
  case "$cmd" in
` + cases.String() + `  esac
  if [ "$COMP_CWORD" -eq 2 ] && [ -n "$verbs" ]; then
    COMPREPLY=( $(compgen -W "$verbs" -- "$cur") )
    return
  fi
  case "$cur" in
    -*) COMPREPLY=( $(compgen -W "` + strings.Join(completionFlags, " ") + `" -- "$cur") ) ;;
    *) COMPREPLY=( $(compgen -f -- "$cur") ) ;;
  esac
}
`
	if args[0] == "zsh" {
		script = "autoload -U +X bashcompinit && bashcompinit\n" + script
	}
	script += "complete -F _clemmys clemmys\n"
	fmt.Fprint(stdout, script)
	return 0
}
