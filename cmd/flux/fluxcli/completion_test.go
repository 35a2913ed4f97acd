package fluxcli

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompletionScripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		m, out, errOut := testMain()
		m.Config.Commands["ui"] = Command{"an added command", func(ctx context.Context, m *Main, args []string) error {
			fs := m.newFlagSet("ui [--addr A]", "Serves.", "  flux ui")
			fs.String("addr", "", "listen `address`")
			return parse(fs, args)
		}}
		if code := m.Run(context.Background(), []string{"completion", shell}); code != 0 {
			t.Fatalf("completion %s: exit %d: %s", shell, code, errOut)
		}
		for _, want := range []string{"streams", "events", "--limit", "--correlation", "--dsn", "ui", "--addr", "completion"} {
			if shell == "fish" && strings.HasPrefix(want, "--") {
				want = "-l " + strings.TrimPrefix(want, "--")
			}
			if !strings.Contains(out.String(), want) {
				t.Errorf("the %s script lacks %s:\n%s", shell, want, out)
			}
		}
		path := filepath.Join(t.TempDir(), "flux."+shell)
		if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		// Check the syntax with the shell, where it is installed.
		if _, err := exec.LookPath(shell); err == nil {
			args := []string{"-n", path}
			if shell == "fish" {
				args = []string{"--no-execute", path}
			}
			if b, err := exec.Command(shell, args...).CombinedOutput(); err != nil {
				t.Errorf("%s rejects the script: %v\n%s", shell, err, b)
			}
		}
	}
	m, _, errOut := testMain()
	if code := m.Run(context.Background(), []string{"completion", "powershell"}); code != exitUsage || !strings.Contains(errOut.String(), "bash, zsh or fish") {
		t.Fatalf("completion powershell: exit %d: %s", code, errOut)
	}
}

// The bash script completes commands and their flags.
func TestBashCompletionCompletes(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	m, out, _ := testMain()
	if code := m.Run(context.Background(), []string{"completion", "bash"}); code != 0 {
		t.Fatal(code)
	}
	script := out.String() + `
COMP_WORDS=(flux str); COMP_CWORD=1; _flux; echo "${COMPREPLY[@]}"
COMP_WORDS=(flux events --cor); COMP_CWORD=2; _flux; echo "${COMPREPLY[@]}"
`
	b, err := exec.Command("bash", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if got := string(b); got != "streams\n--correlation\n" {
		t.Fatalf("completions %q", got)
	}
}
