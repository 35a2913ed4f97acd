package fluxcli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/fluxcapacitor/flux"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// Main is the flux program with its environment made explicit, so tests run
// it in-process with their own clock, IDs and output.
type Main struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Clock is the time source. Default: time.Now.
	Clock func() time.Time
	// NewID returns new aggregate IDs. Default: random UUIDs.
	NewID func() string
	// NewEventID returns event and message IDs. Default: UUIDv7.
	NewEventID func() string
	// Getenv reads the environment. Default: os.Getenv.
	Getenv func(string) string

	// Config is the application the commands serve.
	Config Config

	observer flux.Observer // set by --metrics-addr
}

// Demo is the demo command of the stock flux binary: a tour of
// FluxCapacitor with the budget example, on the embedded SQLite store or a
// server.
func Demo() Command {
	return Command{"run the tour of FluxCapacitor on the embedded SQLite store", runDemo}
}

// commands returns the built-in commands and those of the Config.
func (m *Main) commands() map[string]Command {
	cmds := builtinCommands()
	cmds["help"] = Command{"show the commands, or one command's flags and examples", runHelp}
	cmds["completion"] = Command{"print a shell completion script: bash, zsh or fish", runCompletion}
	for name, c := range m.Config.Commands {
		cmds[name] = c
	}
	return cmds
}

func builtinCommands() map[string]Command {
	return map[string]Command{
		"migrate":     {"create or upgrade the event store's schema", runMigrate},
		"streams":     {"list streams: aggregate type, ID, version, first and last event", runStreams},
		"events":      {"list events of a stream or of the global log, filtered", runEvents},
		"state":       {"show an aggregate's state now, at a time or version, or a diff", runState},
		"trace":       {"follow one correlation ID across every stream: a request's story", runTrace},
		"projections": {"projection status and lag; rebuild, reset or run them", runProjections},
		"relay":       {"relay the global log to NATS JetStream", runRelay},
		"forget":      {"crypto-shred a data subject: delete their key", runForget},
		"keys":        {"manage data keys: rotate the key-encryption secret", runKeys},
		"snapshots":   {"snapshot statistics; prune or delete snapshots", runSnapshots},
		"bench":       {"run the standard workload against a backend, beside the raw driver", runBench},
		"version":     {"print the version and VCS revision of this binary and its modules", runVersion},
	}
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// Usagef returns an error for a mistake in the command line: flux prints
// it with a pointer to the command's help and exits with code 2.
func Usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// Run runs one command line and returns the exit code.
func (m *Main) Run(ctx context.Context, args []string) int {
	if m.Clock == nil {
		m.Clock = time.Now
	}
	if m.Getenv == nil {
		m.Getenv = os.Getenv
	}
	if m.Stdout == nil {
		m.Stdout = io.Discard
	}
	if m.Stderr == nil {
		m.Stderr = io.Discard
	}
	if m.Stdin == nil {
		m.Stdin = strings.NewReader("")
	}
	cmds := m.commands()
	if len(args) == 0 {
		m.usage(m.Stderr, cmds)
		return exitUsage
	}
	if args[0] == "-h" || args[0] == "--help" {
		args = []string{"help"}
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(m.Stderr, "flux: unknown command %q; run 'flux help' for the list\n", args[0])
		return exitUsage
	}
	err := cmd.Run(ctx, m, args[1:])
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(m.Stderr, "flux %s: %s (run 'flux help %s' for its usage)\n", args[0], oneLine(ue.msg), args[0])
		return exitUsage
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(m.Stderr, "flux %s: interrupted\n", args[0])
		return exitError
	default:
		fmt.Fprintf(m.Stderr, "flux %s: %s\n", args[0], oneLine(err.Error()))
		return exitError
	}
}

func (m *Main) usage(w io.Writer, cmds map[string]Command) {
	fmt.Fprintln(w, "flux operates, inspects and time-travels FluxCapacitor event stores.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: flux <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, cmds[n].Summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'flux help <command>' for a command's flags and examples.")
}

// runHelp prints the list of commands, or one command's help.
func runHelp(ctx context.Context, m *Main, args []string) error {
	cmds := m.commands()
	if len(args) == 1 && (args[0] == "--help" || args[0] == "-h") {
		fmt.Fprint(m.Stdout, "Usage: flux help [COMMAND]\n\nShows the commands, or one command's flags and examples.\n\nExamples:\n  flux help\n  flux help events\n")
		return nil
	}
	switch len(args) {
	case 0:
		m.usage(m.Stdout, cmds)
		return nil
	case 1:
		cmd, ok := cmds[args[0]]
		if !ok || args[0] == "help" {
			if args[0] == "help" {
				m.usage(m.Stdout, cmds)
				return nil
			}
			return &usageError{fmt.Sprintf("unknown command %q; run 'flux help' for the list", args[0])}
		}
		return cmd.Run(ctx, m, []string{"--help"})
	}
	return &usageError{"give at most one command: flux help [COMMAND]"}
}

// newFlagSet returns a flag set that reports errors instead of exiting and
// prints its help with examples to stdout.
func (m *Main) newFlagSet(name, synopsis, examples string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(m.Stdout, "Usage: flux %s\n\n%s\n\nFlags:\n", name, synopsis)
		fs.SetOutput(m.Stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		if examples != "" {
			fmt.Fprintf(m.Stdout, "\nExamples:\n%s\n", examples)
		}
	}
	return fs
}

// parse parses args, turning flag errors into usage errors.
func parse(fs *flag.FlagSet, args []string) error {
	// The flag package prints the usage on every error: print it once,
	// only when asked for (an error is one line on stderr).
	help := fs.Usage
	fs.Usage = func() {}
	defer func() { fs.Usage = help }()
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			help()
			return err
		}
		return &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\r", " ")
	return strings.ReplaceAll(s, "\n", "; ")
}
