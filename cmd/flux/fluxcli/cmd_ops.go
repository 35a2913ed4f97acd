package fluxcli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
)

const projectionsSynopsis = `Shows every projection's checkpoint and lag, or operates one:

  flux projections                   status of every projection
  flux projections rebuild NAME      empty the read model and replay the log into it
  flux projections reset NAME        forget the checkpoint (the projection starts over)
  flux projections run               run the application's projections until Ctrl-C

Rebuilds show their progress and stop cleanly on Ctrl-C (run rebuild again
to start over).`

func runProjections(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("projections [rebuild NAME | reset NAME | run]", projectionsSynopsis,
		"  flux projections\n  flux projections rebuild envelope-balances\n  flux projections rebuild envelope-balances --swap\n  flux projections run --metrics-addr :9090")
	c := addCommon(fs)
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	metrics := fs.String("metrics-addr", "", "with run: serve Prometheus metrics on this `address` (host:port)")
	swap := fs.Bool("swap", false, "with rebuild: rebuild into a fresh table and swap it in when complete; readers keep the old read model meanwhile")
	action, rest := firstArg(args)
	name, rest := firstArg(rest)
	if action == "run" && name != "" {
		rest = append([]string{name}, rest...)
		name = ""
	}
	if err := parse(fs, rest); err != nil {
		return err
	}
	switch action {
	case "", "status":
	case "rebuild", "reset":
		if name == "" {
			return &usageError{fmt.Sprintf("give the projection to %s: flux projections %s NAME", action, action)}
		}
	case "run":
	default:
		return &usageError{fmt.Sprintf("unknown projections action %q: use rebuild, reset or run", action)}
	}
	if *swap && action != "rebuild" {
		return &usageError{"--swap goes with 'flux projections rebuild NAME'"}
	}
	if *metrics != "" {
		if action != "run" {
			return &usageError{"--metrics-addr goes with 'flux projections run'"}
		}
		stop, err := m.serveMetrics(ctx, *metrics)
		if err != nil {
			return err
		}
		defer stop()
	}
	return m.withBackend(ctx, *c.dsn, accessFor(action == "" || action == "status"), func(b *Backend) error {
		a, err := m.openApp(b)
		if err != nil {
			return err
		}
		if action == "" || action == "status" {
			return m.projectionStatus(ctx, a, b, *c.json)
		}
		if action != "reset" && len(m.Config.Projections) == 0 {
			return fmt.Errorf("this flux binary has no projections of the application to %s; build the application's own flux with package fluxcli (see docs/cli.md)", action)
		}
		if err := a.addProjections(ctx, m, b); err != nil {
			return err
		}
		switch action {
		case "rebuild":
			if a.projections[name] == nil {
				return fmt.Errorf("unknown projection %q: this application rebuilds %s", name, quoteList(a.names))
			}
			return m.rebuild(ctx, a, name, *swap, *c.json)
		case "reset":
			if !*yes && !m.confirm(fmt.Sprintf("Reset projection %s: it will replay the whole log. Type the name to confirm: ", name), name) {
				return errors.New("not confirmed; nothing changed")
			}
			if err := b.store.DeleteCheckpoint(ctx, name); err != nil {
				return err
			}
			if r, ok := a.projections[name].(projection.Resetter); ok {
				if err := r.Reset(ctx); err != nil {
					return err
				}
			}
			return m.report(*c.json, map[string]any{"projection": name, "reset": true, "position": 0},
				"projection %s reset: it starts again from position 0", name)
		default: // run
			if err := m.observeRunner(a.runner); err != nil {
				return err
			}
			fmt.Fprintf(m.Stdout, "running projections (%s); Ctrl-C to stop\n", strings.Join(a.names, ", "))
			err := a.runner.Run(ctx)
			fmt.Fprintln(m.Stdout, "stopped")
			return err
		}
	})
}

// quoteList names the projections in a message.
func quoteList(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

type projectionRow struct {
	Name      string `json:"name"`
	Position  int64  `json:"position"`
	Head      int64  `json:"head"`
	LagEvents int64  `json:"lag_events"`
	Lag       string `json:"lag"`
	UpdatedAt stamp  `json:"updated_at"`
}

func (m *Main) projectionStatus(ctx context.Context, a *application, b *Backend, asJSON bool) error {
	cps, err := b.store.ListCheckpoints(ctx)
	if err != nil {
		return err
	}
	head, err := b.store.Head(ctx)
	if err != nil {
		return err
	}
	byName := map[string]projection.Checkpoint{}
	for _, n := range a.names {
		byName[n] = projection.Checkpoint{Name: n}
	}
	for _, cp := range cps {
		byName[cp.Name] = cp
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	now := m.Clock()
	var rows []projectionRow
	for _, n := range names {
		cp := byName[n]
		r := projectionRow{Name: n, Position: cp.Position, Head: head, LagEvents: max(head-cp.Position, 0), Lag: "0s", UpdatedAt: stamp(cp.UpdatedAt)}
		if r.LagEvents > 0 {
			for rec, err := range b.store.ReadAll(ctx, flux.ReadAllOptions{After: cp.Position, Limit: 1}) {
				if err != nil {
					return err
				}
				r.Lag = now.Sub(rec.OccurredAt).Round(time.Second).String()
			}
		}
		rows = append(rows, r)
	}
	if asJSON {
		return jsonLines(m.Stdout, rows)
	}
	t := make([][]string, len(rows))
	for i, r := range rows {
		t[i] = []string{r.Name, strconv.FormatInt(r.Position, 10), strconv.FormatInt(r.Head, 10), strconv.FormatInt(r.LagEvents, 10), r.Lag, r.UpdatedAt.String()}
	}
	return table(m.Stdout, []string{"PROJECTION", "POSITION", "HEAD", "LAG (EVENTS)", "LAG (TIME)", "UPDATED"}, t)
}

// rebuild replays the log into a projection, with a progress bar on
// stderr. In place, readers see the read model being rebuilt; with swap it
// is rebuilt into a fresh table, swapped in when complete, and an
// interrupted rebuild leaves the live read model and checkpoint as they
// were.
func (m *Main) rebuild(ctx context.Context, a *application, name string, swap, asJSON bool) error {
	start := time.Now()
	var last time.Time
	lastPos := int64(-1)
	replay := a.runner.Rebuild
	if swap {
		replay = a.runner.RebuildSwap
	}
	cps := a.repo.Store().(projection.CheckpointStore)
	err := replay(ctx, name, projection.ReplayOptions{Progress: func(p projection.Progress) {
		if p.Position != lastPos && (p.Done || time.Since(last) >= 100*time.Millisecond) {
			last, lastPos = time.Now(), p.Position
			fmt.Fprintf(m.Stderr, "\r%s", progressBar(name, p.Position, p.Head))
		}
		if p.Done {
			fmt.Fprintln(m.Stderr)
		}
	}})
	if err != nil && swap {
		// The live read model and its checkpoint are as they were: drop
		// the unfinished copy (the next rebuild would drop it anyway).
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if d, ok := a.projections[name].(interface {
			discardCopy(context.Context) error
		}); !ok {
		} else if derr := d.discardCopy(dctx); derr != nil {
			fmt.Fprintf(m.Stderr, "\nthe unfinished copy remains (the next rebuild drops it): %v\n", derr)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(m.Stderr)
			return fmt.Errorf("rebuild of %s interrupted; run it again to start over: %w", name, ctx.Err())
		}
		return err
	}
	cp, err := cps.LoadCheckpoint(context.WithoutCancel(ctx), name) // done: report it even on a late Ctrl-C
	if err != nil {
		return err
	}
	took := time.Since(start).Round(time.Millisecond)
	if swap {
		return m.report(asJSON, map[string]any{"projection": name, "rebuilt": true, "swapped": true, "position": cp.Position, "seconds": took.Seconds()},
			"rebuilt %s into a fresh table up to position %d in %s and swapped it in; readers kept the old read model until then", name, cp.Position, took)
	}
	return m.report(asJSON, map[string]any{"projection": name, "rebuilt": true, "position": cp.Position, "seconds": took.Seconds()},
		"rebuilt %s up to position %d in %s", name, cp.Position, took)
}

func progressBar(name string, pos, head int64) string {
	const width = 30
	frac := 1.0
	if head > 0 {
		frac = float64(pos) / float64(head)
	}
	n := int(frac * width)
	return fmt.Sprintf("rebuilding %s [%s%s] %d/%d events (%3.0f%%)", name, strings.Repeat("#", n), strings.Repeat(".", width-n), pos, head, frac*100)
}

// confirm asks on stdout and reads the answer from stdin.
func (m *Main) confirm(prompt, want string) bool {
	fmt.Fprint(m.Stdout, prompt)
	line, _ := bufio.NewReader(m.Stdin).ReadString('\n')
	fmt.Fprintln(m.Stdout)
	return strings.TrimSpace(line) == want
}

func runForget(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("forget SUBJECT [--by WHO] [--reason TEXT] [--yes]",
		"Crypto-shreds a data subject: deletes their data key, so their personal data\nbecomes unreadable in every event, snapshot and copy, for good, and no new\npersonal data can be stored for them. The forgetting is recorded (who,\nwhen, why) and a SubjectForgotten record in the global log tells read\nmodels to erase their rows. Says what it did: key deleted, or no personal\ndata held. Asks for confirmation unless --yes.",
		"  flux forget 0190f6a0-3c1e-7b8e-9d2f-0123456789ab --by dpo@example.com --reason \"request 42\"")
	c := addCommon(fs)
	by := fs.String("by", "flux CLI", "who asks (recorded; no personal data)")
	reason := fs.String("reason", "", "why (recorded; no personal data)")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	subject, rest := firstArg(args)
	if err := parse(fs, rest); err != nil {
		return err
	}
	if subject == "" {
		return &usageError{"give the subject (user ID) to forget"}
	}
	return m.withBackend(ctx, *c.dsn, readWrite, func(b *Backend) error {
		if f, done, err := b.store.Forgotten(ctx, subject); err != nil {
			return err
		} else if done {
			// Complete an interrupted forget: the signal to read models.
			rep, err := pii.ForgetSubject(ctx, b.store, subject, pii.ForgetOptions{By: f.By, Reason: f.Reason}, f.At)
			if err != nil {
				return err
			}
			return m.report(*c.json, map[string]any{"subject": subject, "forgotten_at": stamp(f.At), "by": f.By, "already": true,
				"key_deleted": false, "no_personal_data": false, "signalled": rep.Signalled, "signal_position": rep.SignalPosition, "signalled_before": rep.SignalledBefore},
				"subject %s was already forgotten at %s by %s; no key was left to delete", subject, fmtTime(f.At), f.By)
		}
		if !*yes && !m.confirm(fmt.Sprintf("Forget subject %s: their personal data becomes unreadable everywhere, forever.\nType the subject ID to confirm: ", subject), subject) {
			return errors.New("not confirmed; nothing was forgotten")
		}
		rep, err := pii.ForgetSubject(ctx, b.store, subject, pii.ForgetOptions{By: *by, Reason: *reason}, m.Clock())
		if err != nil {
			return err
		}
		return m.report(*c.json, map[string]any{"subject": subject, "forgotten_at": stamp(rep.At), "by": *by, "already": false,
			"key_deleted": rep.KeyDeleted, "no_personal_data": rep.NoPersonalData, "snapshots": "unreadable (encrypted under the deleted key)",
			"signalled": rep.Signalled, "signal_position": rep.SignalPosition, "signalled_before": rep.SignalledBefore},
			"%s", rep.String())
	})
}

func runKeys(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("keys rotate --new-secret-env NAME",
		"Re-wraps every data key from the current key-encryption secret\n(KEY_MANAGEMENT_SECRET) to a new one read from the environment variable\nNAME, in one transaction. Events and snapshots are not touched. Restart\nthe applications with the new secret afterwards.",
		"  NEW_SECRET=$(openssl rand -base64 32) flux keys rotate --new-secret-env NEW_SECRET")
	c := addCommon(fs)
	newEnv := fs.String("new-secret-env", "", "environment variable `NAME` holding the new secret")
	action, rest := firstArg(args)
	if err := parse(fs, rest); err != nil {
		return err
	}
	if action != "rotate" {
		return &usageError{"the keys command has one action: flux keys rotate --new-secret-env NAME"}
	}
	oldSecret := m.Getenv(pii.SecretEnv)
	if oldSecret == "" {
		return &usageError{pii.SecretEnv + " must hold the current secret"}
	}
	if *newEnv == "" || m.Getenv(*newEnv) == "" {
		return &usageError{"--new-secret-env must name a set environment variable holding the new secret"}
	}
	return m.withBackend(ctx, *c.dsn, readWrite, func(b *Backend) error {
		n, err := pii.RotateSecret(ctx, b.store, []byte(oldSecret), []byte(m.Getenv(*newEnv)), m.Clock())
		if err != nil {
			return fmt.Errorf("nothing rotated: %w", err)
		}
		return m.report(*c.json, map[string]any{"rewrapped_keys": n},
			"re-wrapped %d data key(s); set %s to the new secret and restart the applications", n, pii.SecretEnv)
	})
}

type snapshotRow struct {
	AggregateType string `json:"aggregate_type"`
	Snapshots     int    `json:"snapshots"`
	Streams       int    `json:"streams"`
	AvgSize       int    `json:"avg_size_bytes"`
	Newest        stamp  `json:"newest"`
}

func runSnapshots(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("snapshots [prune --keep N | delete [--stream ID]]",
		"Shows snapshot statistics per aggregate type, or prunes them (keeping the\nnewest N per aggregate) or deletes them (they are only a cache: loads\nreplay events without them).",
		"  flux snapshots\n  flux snapshots prune --keep 1\n  flux snapshots delete --stream env-1 --yes")
	c := addCommon(fs)
	keep := countFlag(fs, "keep", "with prune: snapshots to keep per aggregate (>= 1)")
	streamID := fs.String("stream", "", "with delete: only this stream's snapshots")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	action, rest := firstArg(args)
	if err := parse(fs, rest); err != nil {
		return err
	}
	return m.withBackend(ctx, *c.dsn, accessFor(action == "" || action == "stats"), func(b *Backend) error {
		switch action {
		case "prune":
			if *keep < 1 {
				return &usageError{"prune needs --keep N with N >= 1"}
			}
			n, err := b.store.PruneSnapshots(ctx, int(*keep))
			if err != nil {
				return err
			}
			return m.report(*c.json, map[string]any{"pruned": n, "keep": *keep},
				"pruned %d snapshots, keeping the newest %d per aggregate", n, *keep)
		case "delete":
			what := "every snapshot"
			if *streamID != "" {
				what = "the snapshots of " + *streamID
			}
			if !*yes && !m.confirm(fmt.Sprintf("Delete %s? Type yes to confirm: ", what), "yes") {
				return errors.New("not confirmed; nothing deleted")
			}
			n, err := b.store.DeleteSnapshots(ctx, *streamID)
			if err != nil {
				return err
			}
			return m.report(*c.json, map[string]any{"deleted": n, "stream": *streamID},
				"deleted %d snapshots", n)
		case "", "stats":
		default:
			return &usageError{fmt.Sprintf("unknown snapshots action %q: use prune or delete", action)}
		}
		stats := map[string]*snapshotRow{}
		streams := map[string]map[string]bool{}
		sizes := map[string]int{}
		newest := map[string]time.Time{}
		for info, err := range b.store.ListSnapshots(ctx, "") {
			if err != nil {
				return err
			}
			s := stats[info.AggregateType]
			if s == nil {
				s = &snapshotRow{AggregateType: info.AggregateType}
				stats[info.AggregateType], streams[info.AggregateType] = s, map[string]bool{}
			}
			s.Snapshots++
			streams[info.AggregateType][info.StreamID] = true
			sizes[info.AggregateType] += info.Size
			if info.CreatedAt.After(newest[info.AggregateType]) {
				newest[info.AggregateType] = info.CreatedAt
			}
		}
		var rows []snapshotRow
		for typ, s := range stats {
			s.Streams, s.AvgSize, s.Newest = len(streams[typ]), sizes[typ]/s.Snapshots, stamp(newest[typ])
			rows = append(rows, *s)
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i].AggregateType < rows[j].AggregateType })
		if *c.json {
			return jsonLines(m.Stdout, rows)
		}
		if len(rows) == 0 {
			fmt.Fprintln(m.Stdout, "no snapshots")
			return nil
		}
		t := make([][]string, len(rows))
		for i, r := range rows {
			t[i] = []string{r.AggregateType, strconv.Itoa(r.Snapshots), strconv.Itoa(r.Streams), strconv.Itoa(r.AvgSize), r.Newest.String()}
		}
		return table(m.Stdout, []string{"AGGREGATE TYPE", "SNAPSHOTS", "STREAMS", "AVG SIZE (BYTES)", "NEWEST"}, t)
	})
}

// serveMetrics serves Prometheus metrics on addr until stop is called.
func (m *Main) serveMetrics(ctx context.Context, addr string) (stop func(), err error) {
	obs, handler, err := newMetrics()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serve metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", handler)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	m.observer = obs
	fmt.Fprintf(m.Stderr, "serving Prometheus metrics on http://%s/metrics\n", ln.Addr())
	return func() { srv.Close() }, nil
}

// accessFor opens read-only for commands that only read.
func accessFor(reads bool) access {
	if reads {
		return readOnly
	}
	return readWrite
}
