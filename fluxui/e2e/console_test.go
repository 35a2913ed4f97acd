package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// browser finds Chromium, or skips (fails under FLUX_TEST_REQUIRE).
func browser(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("FLUX_E2E_BROWSER"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Chromium found (install it with .ci/install-e2e-deps, or set FLUX_E2E_BROWSER)"
	if os.Getenv("FLUX_TEST_REQUIRE") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

var consoleURLRE = regexp.MustCompile(`flux console on (http://\S+/)`)

// startConsole builds flux and the budget example's own flux, fills a
// store with the demo and serves the console on it; it returns the console's address.
func startConsole(t *testing.T, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	// The stock flux writes the demo store; the budget application's own
	// flux (built with fluxcli, so it knows the budget's types) serves it.
	bin, app := filepath.Join(dir, "flux"), filepath.Join(dir, "budgetflux")
	for _, b := range []struct{ out, pkg string }{{bin, "."}, {app, "./examples/budgetflux"}} {
		build := exec.Command("go", "build", "-o", b.out, b.pkg)
		build.Dir = filepath.Join("..", "..", "cmd", "flux")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b.pkg, err, out)
		}
	}
	db := filepath.Join(dir, "demo.db")
	if out, err := exec.Command(bin, "demo", "--db", db).CombinedOutput(); err != nil {
		t.Fatalf("flux demo: %v\n%s", err, out)
	}
	ui := exec.Command(app, append([]string{"ui", "--dsn", db, "--addr", "127.0.0.1:0"}, args...)...)
	ui.Stderr = os.Stderr
	out, err := ui.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ui.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ui.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { ui.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			ui.Process.Kill()
			<-done
		}
	})
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if m := consoleURLRE.FindStringSubmatch(sc.Text()); m != nil {
			go func() {
				for sc.Scan() {
				}
			}()
			return m[1]
		}
	}
	t.Fatalf("flux ui printed no address: %v", sc.Err())
	return ""
}

// TestConsoleInABrowser walks through the console as a person would.
func TestConsoleInABrowser(t *testing.T) {
	exe := browser(t)
	base := startConsole(t, "--allow-writes")

	shots := os.Getenv("FLUX_E2E_SCREENSHOTS")
	if shots == "" {
		var err error
		if shots, err = os.MkdirTemp("", "flux-console-screenshots-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", shots)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1280, 900), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancel := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	defer cancel()
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start %s: %v", exe, err)
	}

	n := 0
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			n++
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return chromedp.Void{}, err
			}
			return chromedp.Void{}, os.WriteFile(filepath.Join(shots, fmt.Sprintf("%02d-%s.png", n, name)), png, 0o644)
		}
	}
	// run runs one step of the walk, each within 30 seconds.
	run := func(step string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			loc, _ := chromedp.Run(ctx, chromedp.Location())
			t.Fatalf("%s (at %s): %v", step, loc, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		s, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	versionIs := func(v string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void](`document.getElementById("state-version").textContent === "`+v+`"`, chromedp.WithPollingTimeout(20*time.Second))
	}

	// Find an aggregate: search the streams by type, open the first.
	run("stream list",
		chromedp.Navigate(base+"streams"),
		chromedp.WaitVisible(css(`input[name=type]`)),
		chromedp.SendKeys(css(`input[name=type]`), "BudgetEnvelope"),
		chromedp.Click(css(`form.search button`)),
		chromedp.WaitVisible(css(`table.streams a.stream-link`)),
		shot("streams"),
	)
	if count := text(`p.counts`); !strings.Contains(count, "events in the global log") {
		t.Errorf("counts: %q", count)
	}
	run("stream view",
		chromedp.Click(css(`table.streams a.stream-link`)),
		chromedp.WaitVisible(css(`#time-travel`)),
		chromedp.WaitVisible(css(`article.event`)),
		shot("stream"),
	)

	streamURL, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}

	// Time travel: from the last version to the first, with the keys.
	run("time travel", chromedp.Click(css(`#time-travel`)), chromedp.WaitVisible(css(`#slider`)), shot("state-last"))
	lastVersion, lastState := text(`#state-version`), text(`#state-json`)
	max, err := chromedp.Run(ctx, chromedp.AttributeValue(css(`#slider`), "max"))
	if err != nil {
		t.Fatal(err)
	}
	if lastVersion != max.Value || lastVersion == "1" {
		t.Fatalf("time travel opens at version %s of %s; want the last one, above 1", lastVersion, max.Value)
	}
	run("slider to the first version", chromedp.Focus(css(`#slider`)), chromedp.KeyEvent(kb.Home), versionIs("1"), shot("state-first"))
	firstState := text(`#state-json`)
	if firstState == lastState {
		t.Errorf("the state did not change between version %s and 1:\n%s", lastVersion, firstState)
	}
	run("arrow key", chromedp.KeyEvent(kb.ArrowRight), versionIs("2"))
	if second := text(`#state-json`); second == firstState {
		t.Errorf("the state did not change between versions 1 and 2")
	}

	// A diff between two versions highlights the changed fields.
	run("diff",
		chromedp.Click(css(`#diff-prev`)),
		chromedp.WaitVisible(css(`#diff-summary`)),
		chromedp.WaitVisible(css(`tr.changed, tr.added`)),
		shot("diff"),
	)
	if summary := text(`#diff-summary`); !strings.Contains(summary, "between version 1 and version 2") {
		t.Errorf("diff summary: %q", summary)
	}

	// Follow a trace from an event of the stream.
	run("trace",
		chromedp.Navigate(streamURL),
		chromedp.WaitVisible(css(`a.trace-link`)),
		chromedp.Click(css(`a.trace-link`)),
		chromedp.WaitVisible(css(`#tree`)),
		shot("trace"),
	)
	if s := text(`#trace-summary`); !strings.Contains(s, "events in") {
		t.Errorf("trace summary: %q", s)
	}

	// The live tail shows the latest events.
	run("live tail", chromedp.Navigate(base+"tail"), chromedp.WaitVisible(css(`#tail tbody tr`)), shot("tail"))

	// Rebuild a projection, confirmed by typing its name.
	run("rebuild",
		chromedp.Navigate(base+"projections"),
		chromedp.WaitVisible(css(`form.confirm input[name=confirm]`)),
		shot("projections"),
		chromedp.SendKeys(css(`form.confirm input[name=confirm]`), "envelope-balances"),
		chromedp.WaitEnabled(css(`form.confirm button`)),
		chromedp.Click(css(`form.confirm button`)),
		chromedp.WaitVisible(css(`#message`)),
		shot("rebuilt"),
	)
	if msg := text(`#message`); !strings.Contains(msg, "rebuilt envelope-balances up to position") {
		t.Errorf("rebuild message: %q", msg)
	}

	// Forget a user, confirmed by typing the ID again. The demo forgot
	// one of its two users already; the console says so for that one.
	forgot := false
	for row := 1; row <= 2 && !forgot; row++ {
		link := fmt.Sprintf(`table.streams tbody tr:nth-of-type(%d) a.stream-link`, row)
		run("find a user", chromedp.Navigate(base+"streams?type=User"), chromedp.WaitVisible(css(link)))
		user := text(link)
		run("forget",
			chromedp.Navigate(base+"forget?subject="+user),
			chromedp.WaitVisible(css(`form.confirm input[name=confirm]`)),
			chromedp.SendKeys(css(`form.confirm input[name=reason]`), "browser test"),
			chromedp.SendKeys(css(`form.confirm input[name=confirm]`), user),
			chromedp.WaitEnabled(css(`form.confirm button`)),
			shot("forget"),
			chromedp.Click(css(`form.confirm button`)),
			chromedp.WaitVisible(css(`#message`)),
			shot("forgotten"),
		)
		switch msg := text(`#message`); {
		case strings.Contains(msg, "deleted the data key of \""+user+"\""):
			forgot = true
		case !strings.Contains(msg, "was already forgotten"):
			t.Errorf("forget message: %q", msg)
		}
	}
	if !forgot {
		t.Errorf("no user was forgotten")
	}

	files, _ := filepath.Glob(filepath.Join(shots, "*.png"))
	if len(files) < 10 {
		t.Errorf("%d screenshots, want one per page", len(files))
	}
}
