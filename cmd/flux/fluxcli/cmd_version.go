package fluxcli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

const versionSynopsis = `Prints the version of this flux binary and of the FluxCapacitor modules built
into it, the Go version, and the VCS revision it was built from, all read
from the binary's build information (runtime/debug.ReadBuildInfo).

A binary installed with "go install github.com/fluxcapacitor/flux/cmd/flux@v0.1.0"
reports v0.1.0. One built from a git clone with
"go build -buildvcs=true ./cmd/flux" reports the commit, its time and
whether the tree had local changes (and a pseudo-version made from them);
without -buildvcs=true the go command leaves the revision out of builds in
the repository's workspace, and a git worktree never has it.`

func runVersion(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("version [--json]", versionSynopsis, "  flux version\n  flux version --json")
	asJSON := fs.Bool("json", false, "print one JSON object instead of text")
	if err := parse(fs, args); err != nil {
		return err
	}
	info, ok := debug.ReadBuildInfo()
	return writeVersion(m.Stdout, versionOf(info, ok), *asJSON)
}

// versionInfo is what `flux version` reports.
type versionInfo struct {
	Path      string          `json:"path"`
	Version   string          `json:"version"`
	Go        string          `json:"go"`
	Revision  string          `json:"revision,omitempty"`
	Time      string          `json:"time,omitempty"`
	Modified  bool            `json:"modified,omitempty"`
	Modules   []moduleVersion `json:"modules"`
	BuildInfo bool            `json:"build_info"`
}

// moduleVersion is one FluxCapacitor module linked into the binary.
type moduleVersion struct {
	Path    string `json:"path"`
	Version string `json:"version"`
	Replace string `json:"replace,omitempty"` // where a replace directive points
}

// versionOf extracts the version report from build information; ok false
// (a binary without build information) gives "unknown" everywhere.
func versionOf(info *debug.BuildInfo, ok bool) versionInfo {
	v := versionInfo{Path: "github.com/fluxcapacitor/flux/cmd/flux", Version: "unknown", Go: "unknown"}
	if !ok || info == nil {
		return v
	}
	v.BuildInfo = true
	if info.Main.Path != "" {
		v.Path = info.Main.Path
	}
	if info.Main.Version != "" {
		v.Version = info.Main.Version
	}
	if info.GoVersion != "" {
		v.Go = info.GoVersion
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	for _, d := range info.Deps {
		if d.Path != "github.com/fluxcapacitor/flux" && !strings.HasPrefix(d.Path, "github.com/fluxcapacitor/flux/") {
			continue
		}
		mv := moduleVersion{Path: d.Path, Version: d.Version}
		if d.Replace != nil {
			mv.Replace = d.Replace.Path
			if d.Replace.Version != "" {
				mv.Replace += " " + d.Replace.Version
			}
		}
		v.Modules = append(v.Modules, mv)
	}
	return v
}

func writeVersion(w io.Writer, v versionInfo, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(v)
	}
	fmt.Fprintf(w, "flux %s (%s, %s)\n", v.Version, v.Path, v.Go)
	switch {
	case !v.BuildInfo:
		fmt.Fprintln(w, "revision: unknown (the binary carries no build information)")
	case v.Revision == "":
		fmt.Fprintln(w, "revision: unknown (build from a git clone with go build -buildvcs=true to record it)")
	default:
		state := "clean"
		if v.Modified {
			state = "with local changes"
		}
		fmt.Fprintf(w, "revision: %s (%s, %s)\n", v.Revision, v.Time, state)
	}
	for _, mv := range v.Modules {
		if mv.Replace != "" {
			fmt.Fprintf(w, "  %s %s => %s\n", mv.Path, mv.Version, mv.Replace)
		} else {
			fmt.Fprintf(w, "  %s %s\n", mv.Path, mv.Version)
		}
	}
	return nil
}
