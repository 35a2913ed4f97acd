package fluxcli

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

const completionSynopsis = `Prints a shell completion script for the commands and their flags.

  bash:  source <(flux completion bash)        (or save it in /etc/bash_completion.d/flux)
  zsh:   flux completion zsh > "${fpath[1]}/_flux"
  fish:  flux completion fish > ~/.config/fish/completions/flux.fish`

var helpFlagRE = regexp.MustCompile(`(?m)^  -([A-Za-z0-9-]+)`)

// commandFlags returns every command's flags, read from its help.
func (m *Main) commandFlags(ctx context.Context) (names []string, flags map[string][]string) {
	cmds := m.commands()
	flags = map[string][]string{}
	for name, c := range cmds {
		names = append(names, name)
		if name == "help" || name == "completion" {
			continue
		}
		var out bytes.Buffer
		probe := &Main{Stdout: &out, Stderr: &out, Clock: m.Clock, Getenv: func(string) string { return "" }, Config: m.Config}
		_ = c.Run(ctx, probe, []string{"--help"})
		for _, mm := range helpFlagRE.FindAllStringSubmatch(out.String(), -1) {
			flags[name] = append(flags[name], "--"+mm[1])
		}
		sort.Strings(flags[name])
	}
	sort.Strings(names)
	return names, flags
}

func runCompletion(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("completion bash|zsh|fish", completionSynopsis, "  source <(flux completion bash)\n  flux completion fish > ~/.config/fish/completions/flux.fish")
	shell, rest := firstArg(args)
	if err := parse(fs, rest); err != nil {
		return err
	}
	names, flags := m.commandFlags(ctx)
	var b strings.Builder
	switch shell {
	case "bash":
		fmt.Fprintf(&b, "# bash completion for flux\n_flux() {\n  local cur=\"${COMP_WORDS[COMP_CWORD]}\"\n  if [ \"$COMP_CWORD\" -eq 1 ]; then\n    COMPREPLY=($(compgen -W %q -- \"$cur\"))\n    return\n  fi\n  local words=\"\"\n  case \"${COMP_WORDS[1]}\" in\n", strings.Join(names, " "))
		for _, n := range names {
			w := flags[n]
			if n == "help" {
				w = names
			}
			if n == "completion" {
				w = []string{"bash", "zsh", "fish"}
			}
			fmt.Fprintf(&b, "    %s) words=%q ;;\n", n, strings.Join(w, " "))
		}
		b.WriteString("  esac\n  case \"$cur\" in\n    -*|'') COMPREPLY=($(compgen -W \"$words\" -- \"$cur\")) ;;\n    *) COMPREPLY=($(compgen -f -W \"$words\" -- \"$cur\")) ;;\n  esac\n}\ncomplete -o default -F _flux flux\n")
	case "zsh":
		b.WriteString("#compdef flux\n# zsh completion for flux\n_flux() {\n  local -a cmds\n  cmds=(\n")
		cmds := m.commands()
		for _, n := range names {
			fmt.Fprintf(&b, "    %s\n", zshQuote(n+":"+cmds[n].Summary))
		}
		b.WriteString("  )\n  if (( CURRENT == 2 )); then\n    _describe 'command' cmds\n    return\n  fi\n  case $words[2] in\n")
		for _, n := range names {
			w := flags[n]
			if n == "help" {
				w = names
			}
			if n == "completion" {
				w = []string{"bash", "zsh", "fish"}
			}
			fmt.Fprintf(&b, "    %s) compadd -- %s; _files ;;\n", n, strings.Join(w, " "))
		}
		b.WriteString("  esac\n}\ncompdef _flux flux\n")
	case "fish":
		b.WriteString("# fish completion for flux\ncomplete -c flux -f\n")
		cmds := m.commands()
		for _, n := range names {
			fmt.Fprintf(&b, "complete -c flux -n __fish_use_subcommand -a %s -d %s\n", n, fishQuote(cmds[n].Summary))
		}
		for _, n := range names {
			for _, f := range flags[n] {
				fmt.Fprintf(&b, "complete -c flux -n '__fish_seen_subcommand_from %s' -l %s\n", n, strings.TrimPrefix(f, "--"))
			}
		}
		fmt.Fprintf(&b, "complete -c flux -n '__fish_seen_subcommand_from help' -a %q\n", strings.Join(names, " "))
		b.WriteString("complete -c flux -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'\n")
	case "":
		return &usageError{"give the shell: flux completion bash|zsh|fish"}
	default:
		return &usageError{fmt.Sprintf("unknown shell %q: use bash, zsh or fish", shell)}
	}
	_, err := fmt.Fprint(m.Stdout, b.String())
	return err
}

func zshQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
func fishQuote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
}
