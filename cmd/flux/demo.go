package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"text/tabwriter"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/examples/budget"
	"github.com/fluxcapacitor/flux/internal/uuid"
	"github.com/fluxcapacitor/flux/sqlitestore"
)

const demoSynopsis = `Runs a short tour of FluxCapacitor on the embedded SQLite store, with the
PHP library's example domain (users with personal data, budget envelopes,
name registries): commands go through the command bus, the user's state is
shown now and at an earlier moment, and the stored events are printed —
personal data encrypted. The demo's clock moves one hour per step so the
history has distinct moments.

Without --db the database lives in a temporary directory that is removed
when the demo ends.`

const demoExamples = `  flux demo
  flux demo --db demo.db     # keep the database to inspect it afterwards`

// demoSecret encrypts the demo's personal data. Real applications read
// KEY_MANAGEMENT_SECRET.
const demoSecret = "flux-demo-secret-do-not-use-in-production"

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
	app   *budget.App
	now   time.Time
	newID func() string
	step  int
}

func newDemo(ctx context.Context, m *Main, path string) (*demo, error) {
	store, err := sqlitestore.Open(ctx, path, nil)
	if err != nil {
		return nil, err
	}
	d := &demo{m: m, out: m.Stdout, store: store}
	// The demo clock starts a day ago, on the hour, and moves one hour per
	// step, so that "the state at an earlier moment" has a moment to show.
	d.now = m.Clock().UTC().Truncate(time.Hour).Add(-24 * time.Hour)
	d.newID = m.NewID
	if d.newID == nil {
		d.newID = uuid.NewRandom
	}
	d.app, err = budget.NewApp(budget.Config{Store: store, Secret: []byte(demoSecret), Clock: func() time.Time { return d.now }})
	if err != nil {
		store.Close()
		return nil, err
	}
	fmt.Fprintf(d.out, "FluxCapacitor demo on the embedded SQLite store at %s\n", path)
	return d, nil
}

// say prints a numbered step.
func (d *demo) say(format string, args ...any) {
	d.step++
	fmt.Fprintf(d.out, "\n%d. %s\n", d.step, fmt.Sprintf(format, args...))
}

// dispatch runs a command at the demo clock's time, reports the events it
// stored, and moves the clock one hour on.
func (d *demo) dispatch(ctx context.Context, cmd any) error {
	head, err := d.store.Head(ctx)
	if err != nil {
		return err
	}
	if err := d.app.Commands.Dispatch(ctx, cmd); err != nil {
		return err
	}
	for rec, err := range d.store.ReadAll(ctx, flux.ReadAllOptions{After: head}) {
		if err != nil {
			return err
		}
		fmt.Fprintf(d.out, "   stored %s as version %d of %s %s at %s\n", rec.EventName, rec.StreamVersion,
			rec.AggregateType, short(rec.StreamID), rec.OccurredAt.Format("2006-01-02 15:04"))
	}
	d.now = d.now.Add(time.Hour)
	return nil
}

func (d *demo) run(ctx context.Context) error {
	ctx = flux.WithRequestID(ctx, "demo-"+d.newID()[:8])
	userID := d.newID()

	d.say("Ada signs up (her e-mail address is claimed in the e-mail registry)")
	if err := d.dispatch(ctx, budget.SignUp{UserID: userID, Email: "ada@example.com", Firstname: "Ada", Lastname: "Byron", Language: "en", Consent: true}); err != nil {
		return err
	}
	d.say("Ada changes her first name to Augusta")
	if err := d.dispatch(ctx, budget.ChangeFirstname{UserID: userID, Firstname: "Augusta"}); err != nil {
		return err
	}
	between := d.now.Add(-30 * time.Minute)
	d.say("Ada marries and changes her last name to King")
	if err := d.dispatch(ctx, budget.ChangeLastname{UserID: userID, Lastname: "King"}); err != nil {
		return err
	}

	d.say("Load the user now, and as she was at %s", between.Format("2006-01-02 15:04"))
	now, err := flux.Load[*budget.User](ctx, d.app.Repo, userID)
	if err != nil {
		return err
	}
	then, err := flux.LoadAt[*budget.User](ctx, d.app.Repo, userID, between)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "   now:      %s %s <%s>, version %d\n", now.Firstname, now.Lastname, now.Email, now.Version())
	fmt.Fprintf(d.out, "   at %s: %s %s <%s>, version %d\n", between.Format("15:04"), then.Firstname, then.Lastname, then.Email, then.Version())

	d.say("The stored events, from the global log (personal data is encrypted)")
	return d.printLog(ctx)
}

var envelopeRE = regexp.MustCompile(`fluxpii:v1:[A-Za-z0-9_-]+`)

func (d *demo) printLog(ctx context.Context) error {
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "   POS\tSTREAM\tVER\tEVENT\tOCCURRED (UTC)\tPAYLOAD")
	for rec, err := range d.store.ReadAll(ctx, flux.ReadAllOptions{}) {
		if err != nil {
			return err
		}
		payload := envelopeRE.ReplaceAllString(string(rec.Payload), "fluxpii:v1:…")
		fmt.Fprintf(tw, "   %d\t%s\t%d\t%s v%d\t%s\t%s\n", rec.Position, short(rec.StreamID), rec.StreamVersion,
			rec.EventName, rec.EventVersion, rec.OccurredAt.Format("2006-01-02 15:04"), payload)
	}
	return tw.Flush()
}

// short abbreviates UUIDs and claim IDs for tables.
func short(id string) string {
	if uuid.Valid(id) || len(id) > 24 {
		return id[:8] + "…"
	}
	return id
}
