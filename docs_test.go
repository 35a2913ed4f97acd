package flux_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// docBlock is one ```go block of a Markdown file.
type docBlock struct {
	file   string // relative to the repository root, e.g. docs/snapshots.md
	line   int    // line of the first line of code (after the fence)
	code   string
	marker string // "fragment", "compile-only" or ""
}

// Markers that may precede a ```go block (on the last non-blank line before it).
const (
	markFragment    = "<!-- fragment -->"
	markCompileOnly = "<!-- compile-only -->"
)

// docGoBlocks returns the ```go blocks of a Markdown file and a problem per
// unterminated block.
func docGoBlocks(t *testing.T, file string) []docBlock {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var (
		blocks   []docBlock
		cur      *docBlock
		code     strings.Builder
		lastText string // the last non-blank line outside a block
		inOther  bool   // inside a fence of another language
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur != nil && trimmed == "```":
			cur.code = code.String()
			blocks = append(blocks, *cur)
			cur = nil
			lastText = ""
		case cur != nil:
			code.WriteString(line)
			code.WriteByte('\n')
		case inOther:
			if trimmed == "```" {
				inOther = false
				lastText = ""
			}
		case trimmed == "```go":
			cur = &docBlock{file: filepath.ToSlash(file), line: n + 1}
			switch lastText {
			case markFragment:
				cur.marker = "fragment"
			case markCompileOnly:
				cur.marker = "compile-only"
			}
			code.Reset()
		case strings.HasPrefix(trimmed, "```"):
			inOther = true
		case trimmed != "":
			lastText = trimmed
		}
	}
	if cur != nil {
		t.Errorf("%s:%d: ```go block is never closed", file, cur.line-1)
	}
	return blocks
}

// docFiles are the Markdown files whose Go blocks are checked.
func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"README.md"}, files...)
}

var packageMain = regexp.MustCompile(`(?m)^package main\s*$`)

// TestDocsGoBlocks holds the docs to the API: every ```go block in
// README.md and docs/ is a complete program, compiled (in one temporary
// module against this workspace) and run, or is marked with a line
// <!-- fragment --> (not compiled) or <!-- compile-only --> (compiled, not
// run: programs that need a server or run until stopped) just before it.
func TestDocsGoBlocks(t *testing.T) {
	t.Parallel() // waits on child go commands, beside the other tests
	if testing.Short() {
		t.Skip("compiles every program of the docs; skipped with -short")
	}
	goCmd := goCommand(t)
	tmp := t.TempDir()
	writeDocsWorkspace(t, tmp)

	type program struct {
		dir string
		docBlock
	}
	var programs []program
	for _, file := range docFiles(t) {
		for _, b := range docGoBlocks(t, file) {
			if b.marker == "fragment" {
				continue
			}
			if !packageMain.MatchString(b.code) {
				t.Errorf("%s:%d: this ```go block is not a complete program (no \"package main\"): make it one, or put a line %s before it", b.file, b.line-1, markFragment)
				continue
			}
			dir := fmt.Sprintf("p%02d", len(programs)+1)
			if err := os.MkdirAll(filepath.Join(tmp, dir), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(tmp, dir, "main.go"), []byte(b.code), 0o644); err != nil {
				t.Fatal(err)
			}
			programs = append(programs, program{dir, b})
		}
	}
	if len(programs) == 0 {
		t.Fatal("no complete programs found in the docs: the parser is broken")
	}

	// One build (and vet) for all of them; errors point back into the docs.
	toDoc := func(out []byte) string {
		s := string(out)
		for _, p := range programs {
			re := regexp.MustCompile(`(\./)?` + p.dir + `/main\.go:(\d+)`)
			s = re.ReplaceAllStringFunc(s, func(m string) string {
				var n int
				fmt.Sscanf(re.FindStringSubmatch(m)[2], "%d", &n)
				return fmt.Sprintf("%s:%d", p.file, p.line+n-1)
			})
		}
		return s
	}
	bin := filepath.Join(tmp, "bin")
	for _, args := range [][]string{{"build", "-o", bin + string(filepath.Separator), "./..."}, {"vet", "./..."}} {
		cmd := exec.Command(goCmd, args...)
		cmd.Dir = tmp
		cmd.Env = append(os.Environ(), "GOWORK="+filepath.Join(tmp, "go.work"), "GOFLAGS=-buildvcs=false")
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s of the docs' programs: %v\n%s", args[0], err, toDoc(out))
		}
		t.Logf("go %s of %d programs: %v", args[0], len(programs), time.Since(start).Round(time.Millisecond))
	}

	for _, p := range programs {
		if p.marker == "compile-only" {
			continue
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, filepath.Join(bin, p.dir))
		cmd.Dir = t.TempDir() // programs may write files (flux.db)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("%s:%d: the program fails when run (mark it %s if it needs a server): %v\n%s", p.file, p.line-1, markCompileOnly, err, out)
		}
	}
}

// writeDocsWorkspace writes a module "fluxdocs" into dir and a go.work that
// uses it and every module of this repository's go.work.
func writeDocsWorkspace(t *testing.T, dir string) {
	t.Helper()
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	work, err := os.ReadFile("go.work")
	if err != nil {
		t.Fatal(err)
	}
	var uses []string
	inUse := false
	for _, line := range strings.Split(string(work), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "use" && f[1] == "(":
			inUse = true
		case len(f) == 1 && f[0] == ")":
			inUse = false
		case inUse && len(f) == 1:
			uses = append(uses, f[0])
		case len(f) == 2 && f[0] == "use":
			uses = append(uses, f[1])
		}
	}
	var w strings.Builder
	fmt.Fprintf(&w, "go %s\n\nuse (\n\t.\n", goVersionOf(t, "go.mod"))
	for _, u := range uses {
		fmt.Fprintf(&w, "\t%s\n", filepath.Join(root, u))
	}
	w.WriteString(")\n")
	files := map[string]string{
		"go.work": w.String(),
		"go.mod":  "module fluxdocs\n\ngo " + goVersionOf(t, "go.mod") + "\n",
	}
	if sum, err := os.ReadFile("go.work.sum"); err == nil {
		files["go.work.sum"] = string(sum)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// goVersionOf returns the go directive of a go.mod file.
func goVersionOf(t *testing.T, gomod string) string {
	t.Helper()
	data, err := os.ReadFile(gomod)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("%s has no go directive", gomod)
	}
	return string(m[1])
}

// goCommand returns the go command of the toolchain running the tests.
func goCommand(t *testing.T) string {
	t.Helper()
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goCmd); err != nil {
		if goCmd, err = exec.LookPath("go"); err != nil {
			t.Skip("no go command to compile with")
		}
	}
	return goCmd
}

func TestDocGoBlocksReadsMarkers(t *testing.T) {
	md := filepath.Join(t.TempDir(), "x.md")
	doc := "# X\n\n<!-- fragment -->\n```go\nx := 1\n```\n\n```sh\n```go\n```\n\n<!-- compile-only -->\n\n```go\npackage main\n```\nText.\n```go\nfunc f() {}\n```\n"
	if err := os.WriteFile(md, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range docGoBlocks(t, md) {
		got = append(got, fmt.Sprintf("%d:%s:%q", b.line, b.marker, b.code))
	}
	want := []string{`5:fragment:"x := 1\n"`, `15:compile-only:"package main\n"`, `19::"func f() {}\n"`}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("blocks:\n%v\nwant:\n%v", got, want)
	}
}

// TestDependingOnFluxAsDocumented follows docs/depending-on-flux.md in a
// temporary directory: the repository as work/flux, the documented files
// in work/myapp, and each documented way (replace lines, a workspace) run
// command by command, ending in the application's own successful run. It
// also checks the table of modules against the repository's go.mod files.
func TestDependingOnFluxAsDocumented(t *testing.T) {
	t.Parallel() // waits on child go commands, beside the other tests
	if testing.Short() {
		t.Skip("builds an application outside the repository; skipped with -short")
	}
	const doc = "docs/depending-on-flux.md"
	goCmd := goCommand(t)
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	type section struct {
		title string
		files map[string]string
		runs  []string
	}
	var (
		sections []*section
		rows     [][]string
	)
	cur := &section{title: "(top)", files: map[string]string{}}
	sections = append(sections, cur)
	data, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	fence := func(i int) (string, int) { // the block opening at or after line i
		for i < len(lines) && !strings.HasPrefix(lines[i], "```") {
			i++
		}
		j := i + 1
		for j < len(lines) && lines[j] != "```" {
			j++
		}
		if j >= len(lines) {
			t.Fatalf("%s:%d: unterminated block", doc, i+1)
		}
		return strings.Join(lines[i+1:j], "\n") + "\n", j
	}
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		switch {
		case strings.HasPrefix(line, "## "):
			cur = &section{title: line[3:], files: map[string]string{}}
			sections = append(sections, cur)
		case strings.HasPrefix(line, "<!-- file: "):
			name := strings.TrimSuffix(strings.TrimPrefix(line, "<!-- file: "), " -->")
			cur.files[name], i = fence(i + 1)
		case line == "<!-- run -->":
			var block string
			block, i = fence(i + 1)
			cur.runs = append(cur.runs, block)
		case line == "<!-- modules -->":
			for i++; i < len(lines) && strings.HasPrefix(lines[i], "|"); i++ {
				var cells []string
				for _, c := range strings.Split(strings.Trim(lines[i], "|"), "|") {
					cells = append(cells, strings.Trim(strings.TrimSpace(c), "`"))
				}
				rows = append(rows, cells)
			}
		}
	}

	shared := map[string]string{}
	var scenarios []*section
	for _, s := range sections {
		if len(s.runs) == 0 {
			for name, content := range s.files {
				shared[name] = content
			}
		} else {
			scenarios = append(scenarios, s)
		}
	}
	if len(scenarios) != 2 || len(rows) < 3 {
		t.Fatalf("%s: found %d ways to depend (want 2: replace lines, workspace) and %d table rows: the markers moved?", doc, len(scenarios), len(rows))
	}

	t.Run("the table of modules matches the repository", func(t *testing.T) {
		want := requiredCoreVersion(t, "sqlitestore/go.mod")
		for _, r := range rows[2:] { // header and separator
			if len(r) != 4 {
				t.Errorf("row %v: want 4 cells", r)
				continue
			}
			req, repl, use := strings.Fields(r[1]), strings.Fields(r[2]), r[3]
			if len(req) != 2 || len(repl) != 3 || repl[0] != req[0] || req[1] != want {
				t.Errorf("row %v: want `path %s` and `path => dir`", r, want)
				continue
			}
			dir := strings.TrimPrefix(repl[2], "../flux")
			if use != "./flux"+dir {
				t.Errorf("row %v: go work use %q, want ./flux%s", r, use, dir)
			}
			mod, err := os.ReadFile(filepath.Join(root, dir, "go.mod"))
			if err != nil || !strings.HasPrefix(string(mod), "module "+req[0]+"\n") {
				t.Errorf("row %v: %s/go.mod is not module %s (%v)", r, "."+dir, req[0], err)
			}
		}
	})

	for _, s := range scenarios {
		t.Run(s.title, func(t *testing.T) {
			work := t.TempDir()
			if err := os.Symlink(root, filepath.Join(work, "flux")); err != nil {
				t.Fatal(err)
			}
			files := map[string]string{}
			for n, c := range shared {
				files[n] = c
			}
			for n, c := range s.files {
				files[n] = c
			}
			for name, content := range files {
				p := filepath.Join(work, filepath.FromSlash(name))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var env []string
			for _, e := range os.Environ() {
				if !strings.HasPrefix(e, "GOWORK=") { // as in a fresh shell
					env = append(env, e)
				}
			}
			dir := work
			var lastOut []byte
			for _, block := range s.runs {
				for _, line := range strings.Split(block, "\n") {
					line, _, _ = strings.Cut(line, "#")
					f := strings.Fields(line)
					switch {
					case len(f) == 0:
					case f[0] == "cd" && len(f) == 2:
						dir = filepath.Join(dir, f[1])
					case f[0] == "go":
						cmd := exec.Command(goCmd, f[1:]...)
						cmd.Dir, cmd.Env = dir, env
						out, err := cmd.CombinedOutput()
						if err != nil {
							t.Fatalf("%s, %q: %s in %s: %v\n%s", doc, s.title, line, dir, err, out)
						}
						lastOut = out
					default:
						t.Fatalf("%s, %q: the test runs only cd and go commands, not %q", doc, s.title, line)
					}
				}
			}
			if !strings.Contains(string(lastOut), "notebook-1 holds 1 notes at version 1") {
				t.Errorf("the application printed %q", lastOut)
			}
		})
	}
}

// requiredCoreVersion returns the version at which a module's go.mod
// requires the core.
func requiredCoreVersion(t *testing.T, gomod string) string {
	t.Helper()
	data, err := os.ReadFile(gomod)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?github\.com/fluxcapacitor/flux (v\S+)`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("%s does not require the core", gomod)
	}
	return string(m[1])
}

// TestMakeTestSaysWhatItSkipped holds the README's claims about make test:
// it runs every module even after one fails, fails at the end naming the
// failed module, and prints per service whether its suites ran.
func TestMakeTestSaysWhatItSkipped(t *testing.T) {
	t.Parallel() // waits on child go commands, beside the other tests
	if testing.Short() {
		t.Skip("runs make; skipped with -short")
	}
	makeCmd, err := exec.LookPath("make")
	if err != nil {
		t.Skip("no make")
	}
	goCmd := goCommand(t)
	tmp := t.TempDir()
	for name, test := range map[string]string{"bad": `t.Fatal("broken on purpose")`, "good": ""} {
		dir := filepath.Join(tmp, name)
		files := map[string]string{
			"go.mod":    "module " + name + "\n\ngo " + goVersionOf(t, "go.mod") + "\n",
			"x_test.go": "package " + name + "\n\nimport \"testing\"\n\nfunc TestX(t *testing.T) { " + test + " }\n",
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for f, c := range files {
			if err := os.WriteFile(filepath.Join(dir, f), []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	cmd := exec.Command(makeCmd, "-s", "test", "GO="+goCmd, "MODULES="+filepath.Join(tmp, "bad")+" "+filepath.Join(tmp, "good"))
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "FLUX_TEST_") && !strings.HasPrefix(e, "GOWORK=") {
			env = append(env, e)
		}
	}
	cmd.Env = append(env, "FLUX_TEST_NATS_URL=nats://127.0.0.1:1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("make test passed with a failing module:\n%s", out)
	}
	if strings.Contains(string(out), "race detector needs cgo") {
		t.Skipf("no C compiler for -race: %s", out)
	}
	for _, want := range []string{
		"== test " + filepath.Join(tmp, "good"), // ran after the failure
		"PostgreSQL (pgstore,cmd/flux): SKIPPED: FLUX_TEST_POSTGRES_DSN is not set",
		"MySQL/MariaDB (mysqlstore,cmd/flux): SKIPPED: FLUX_TEST_MYSQL_DSN is not set",
		"NATS (natsrelay,cmd/flux): ran (FLUX_TEST_NATS_URL is set)",
		"FAIL: " + filepath.Join(tmp, "bad") + "\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("make test output lacks %q:\n%s", want, out)
		}
	}
}
