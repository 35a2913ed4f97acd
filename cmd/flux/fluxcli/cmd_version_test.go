package fluxcli

import (
	"bytes"
	"context"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionReportsModuleVersionAndRevision(t *testing.T) {
	info := &debug.BuildInfo{
		GoVersion: "go1.26.0",
		Main:      debug.Module{Path: "github.com/fluxcapacitor/flux/cmd/flux", Version: "v0.1.0"},
		Deps: []*debug.Module{
			{Path: "github.com/fluxcapacitor/flux", Version: "v0.1.0"},
			{Path: "github.com/fluxcapacitor/flux/sqlitestore", Version: "v0.1.0", Replace: &debug.Module{Path: "../../sqlitestore"}},
			{Path: "modernc.org/sqlite", Version: "v1.62.0"},
		},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "21cc027573e6ec7be9c486d026054025b91bf29f"},
			{Key: "vcs.time", Value: "2026-12-05T23:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	var out bytes.Buffer
	if err := writeVersion(&out, versionOf(info, true), false); err != nil {
		t.Fatal(err)
	}
	want := `flux v0.1.0 (github.com/fluxcapacitor/flux/cmd/flux, go1.26.0)
revision: 21cc027573e6ec7be9c486d026054025b91bf29f (2026-12-05T23:00:00Z, with local changes)
  github.com/fluxcapacitor/flux v0.1.0
  github.com/fluxcapacitor/flux/sqlitestore v0.1.0 => ../../sqlitestore
`
	if out.String() != want {
		t.Errorf("version output:\n%s\nwant:\n%s", out.String(), want)
	}

	out.Reset()
	if err := writeVersion(&out, versionOf(nil, false), false); err != nil {
		t.Fatal(err)
	}
	if want := "flux unknown (github.com/fluxcapacitor/flux/cmd/flux, unknown)\nrevision: unknown (the binary carries no build information)\n"; out.String() != want {
		t.Errorf("without build info:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestVersionCommandReadsThisBinarysBuildInfo(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := (&Main{Stdout: &stdout, Stderr: &stderr}).Run(context.Background(), []string{"version", "--json"}); code != exitOK {
		t.Fatalf("flux version --json: exit %d, stderr %s", code, stderr.String())
	}
	// A test binary of a library package lists no dependencies:
	// TestBinaries checks the modules of a real flux binary.
	for _, want := range []string{`"path":"github.com/fluxcapacitor/flux/cmd/flux"`, `"build_info":true`} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("flux version --json = %s, want it to contain %s", stdout.String(), want)
		}
	}
}
