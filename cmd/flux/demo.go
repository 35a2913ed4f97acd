package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/examples/budget"
	"github.com/fluxcapacitor/flux/internal/uuid"
	"github.com/fluxcapacitor/flux/sqlitestore"
)

const demoSynopsis = `Runs a short tour of FluxCapacitor on the embedded SQLite store: a user
signs up and changes names, the user's state is shown now and at an earlier
moment, and the stored events are printed. The demo's clock moves one hour
per step so the history has distinct moments.

Without --db the database lives in a temporary directory that is removed
when the demo ends.`

const demoExamples = `  flux demo
  flux demo --db demo.db     # keep the database to inspect it afterwards`

func runDemo(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("demo [--db FILE]", demoSynopsis, demoExamples)
	dbPath := fs.String("db", "", "SQLite `file` to write and keep (default: a temporary one)")
	if err := parse(fs, args); err != nil {
		return err
	}
	path := *dbPath
	if path == "" {
		dir, err := os.MkdirTemp("", "flux-demo-")
		if err != nil {
			return fmt.Errorf("create a temporary directory: %w", err)
		}
		defer os.RemoveAll(dir)
		path = filepath.Join(dir, "flux.db")
	}
	d, err := newDemo(ctx, m, path)
	if err != nil {
		return err
	}
	defer d.store.Close()
	if err := d.run(ctx); err != nil {
		return err
	}
	if *dbPath == "" {
		fmt.Fprintln(m.Stdout, "\nThe demo database is removed now; run 'flux demo --db demo.db' to keep it.")
	} else {
		fmt.Fprintf(m.Stdout, "\nThe demo database is kept at %s.\n", path)
	}
	return nil
}

type demo struct {
	m     *Main
	out   io.Writer
	store *sqlitestore.Store
	repo  *flux.Repository
	now   time.Time
	newID func() string
	step  int
}

func newDemo(ctx context.Context, m *Main, path string) (*demo, error) {
	store, err := sqlitestore.Open(ctx, path, nil)
	if err != nil {
		return nil, err
	}
	reg, err := budget.NewRegistry()
	if err != nil {
		store.Close()
		return nil, err
	}
	d := &demo{m: m, out: m.Stdout, store: store}
	// The demo clock starts a day ago, on the hour, and moves one hour per
	// save, so that "the state at an earlier moment" has a moment to show.
	d.now = m.Clock().UTC().Truncate(time.Hour).Add(-24 * time.Hour)
	d.newID = m.NewID
	if d.newID == nil {
		d.newID = uuid.NewRandom
	}
	repo, err := flux.NewRepository(flux.Config{Store: store, Registry: reg, Clock: func() time.Time { return d.now }})
	if err != nil {
		store.Close()
		return nil, err
	}
	d.repo = repo
	fmt.Fprintf(d.out, "FluxCapacitor demo on the embedded SQLite store at %s\n", path)
	return d, nil
}

// say prints a numbered step.
func (d *demo) say(format string, args ...any) {
	d.step++
	fmt.Fprintf(d.out, "\n%d. %s\n", d.step, fmt.Sprintf(format, args...))
}

// save saves the aggregates at the demo clock's current time, reports what
// was stored and moves the clock one hour on.
func (d *demo) save(ctx context.Context, aggs ...flux.Aggregate) error {
	type pending struct {
		id     string
		events []any
		from   int64
	}
	var before []pending
	for _, a := range aggs {
		before = append(before, pending{a.ID(), a.PendingEvents(), a.Version() - int64(len(a.PendingEvents()))})
	}
	if err := d.repo.Save(ctx, aggs...); err != nil {
		return err
	}
	reg := d.repo.Registry()
	for _, p := range before {
		for i, e := range p.events {
			name, _, _ := reg.EventName(e)
			fmt.Fprintf(d.out, "   stored %s as version %d of %s at %s\n", name, p.from+int64(i)+1, p.id, d.now.Format("2006-01-02 15:04"))
		}
	}
	d.now = d.now.Add(time.Hour)
	return nil
}

func (d *demo) run(ctx context.Context) error {
	ctx = flux.WithRequestID(ctx, "demo-"+d.newID()[:8])
	userID := d.newID()

	d.say("Ada signs up")
	ada, err := budget.SignUp(userID, "ada@example.com", "Ada", "Byron", "en", true)
	if err != nil {
		return err
	}
	if err := d.save(ctx, ada); err != nil {
		return err
	}

	d.say("Ada changes her first name to Augusta")
	if err := ada.ChangeFirstname("Augusta"); err != nil {
		return err
	}
	if err := d.save(ctx, ada); err != nil {
		return err
	}
	between := d.now.Add(-30 * time.Minute)

	d.say("Ada marries and changes her last name to King")
	if err := ada.ChangeLastname("King"); err != nil {
		return err
	}
	if err := d.save(ctx, ada); err != nil {
		return err
	}

	d.say("Load the user now, and as she was at %s", between.Format("2006-01-02 15:04"))
	now, err := flux.Load[*budget.User](ctx, d.repo, userID)
	if err != nil {
		return err
	}
	then, err := flux.LoadAt[*budget.User](ctx, d.repo, userID, between)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "   now:      %s %s <%s>, version %d\n", now.Firstname, now.Lastname, now.Email, now.Version())
	fmt.Fprintf(d.out, "   at %s: %s %s <%s>, version %d\n", between.Format("15:04"), then.Firstname, then.Lastname, then.Email, then.Version())

	d.say("The stored events, from the global log")
	return d.printLog(ctx)
}

func (d *demo) printLog(ctx context.Context) error {
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "   POS\tSTREAM\tVER\tEVENT\tOCCURRED (UTC)\tREQUEST\tPAYLOAD")
	for rec, err := range d.store.ReadAll(ctx, flux.ReadAllOptions{}) {
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "   %d\t%s\t%d\t%s v%d\t%s\t%s\t%s\n", rec.Position, short(rec.StreamID), rec.StreamVersion,
			rec.EventName, rec.EventVersion, rec.OccurredAt.Format("2006-01-02 15:04"), rec.Metadata.RequestID, rec.Payload)
	}
	return tw.Flush()
}

// short abbreviates UUIDs for tables.
func short(id string) string {
	if uuid.Valid(id) {
		return id[:8] + "…"
	}
	return id
}
