package fluxcli

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
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/fluxcapacitor/flux/uuid"
)

const demoSynopsis = `Runs a tour of FluxCapacitor on the embedded SQLite store, with the PHP
library's example domain (users with personal data, budget envelopes, name
registries): sign-ups, renames, a transfer, a conflict retried, a snapshot,
an upcast event, a projection, a time-travel view and a user forgotten,
printing what happens at each step, then the stored events. The demo's
clock moves one hour per command so the history has distinct moments.
It does not show the NATS relay, OpenTelemetry, idempotency keys or secret
rotation (see 'flux relay', 'flux keys rotate' and the guides).

Each step that stores events prints their correlation ID: 'flux trace ID'
tells that step's story. Personal data is encrypted under the secret in
KEY_MANAGEMENT_SECRET, or, when it is not set, under a built-in demo secret
that the demo prints; give the same secret to the other commands to read
the personal data.

Without --db the database is made in a new temporary directory, and kept
there for you to inspect with the other commands. With --dsn the demo fills an empty PostgreSQL or
MySQL/MariaDB store instead (created if needed), and keeps it.`

const demoExamples = `  flux demo
  flux demo --db demo.db     # keep the database to inspect it afterwards
  flux demo --dsn 'postgres://postgres@127.0.0.1:5432/test?flux_schema=demo'`

// demoSecret encrypts the demo's personal data when KEY_MANAGEMENT_SECRET
// is not set. Real applications always read KEY_MANAGEMENT_SECRET.
const demoSecret = "flux-demo-secret-do-not-use-in-production"

func runDemo(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("demo [--db FILE | --dsn DSN]", demoSynopsis, demoExamples)
	dbPath := fs.String("db", "", "SQLite `file` to write and keep (default: a temporary one)")
	dsn := fs.String("dsn", "", "an empty store to fill and keep, as for the other commands (not FLUX_DSN: the demo never writes to a configured store by accident)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dbPath != "" && *dsn != "" {
		return &usageError{"give --db or --dsn, not both"}
	}
	path := *dbPath
	if *dsn != "" {
		path = *dsn
	}
	if path == "" {
		dir, err := os.MkdirTemp("", "flux-demo-")
		if err != nil {
			return fmt.Errorf("create a temporary directory: %w", err)
		}
		path = filepath.Join(dir, "flux.db")
	}
	b, err := openBackend(ctx, path, create)
	if err != nil {
		return err
	}
	defer b.Close()
	d, err := newDemo(ctx, m, b)
	if err != nil {
		return err
	}
	d.dsnArg = " --dsn " + path
	if *dsn != "" {
		d.dsnArg = " --dsn <the same DSN>" // never print a password
	}
	if err := d.run(ctx); err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "\nThe demo store is kept at %s.\n", b.where)
	if *dsn == "" {
		fmt.Fprintf(m.Stdout, "Look inside it: flux streams --dsn %s (every command has --help)\n", path)
	}
	switch {
	case m.Config.Registry == nil:
		// The stock flux shows payloads as stored: the budget example's own
		// flux knows its types and decrypts its personal data.
		secret := ""
		if d.builtinSecret {
			secret = "KEY_MANAGEMENT_SECRET=" + demoSecret + " "
		}
		fmt.Fprintf(m.Stdout, "Its aggregates and personal data, with the budget example's own flux:\n  %sgo run ./cmd/flux/examples/budgetflux state User ID%s\n", secret, d.dsnArg)
	case d.builtinSecret:
		fmt.Fprintf(m.Stdout, "Read its personal data: KEY_MANAGEMENT_SECRET=%s flux events%s\n", demoSecret, d.dsnArg)
	}
	return nil
}

type demo struct {
	m       *Main
	out     io.Writer
	store   Store
	app     *budget.App
	now     time.Time
	newID   func() string
	eventID func() string
	step    int
	// requestPrefix starts the request ID of every step.
	requestPrefix string
	backend       *Backend
	// stepHead is the global position before the current step's events.
	stepHead int64
	// dsnArg is the --dsn flag that names the demo's store in hints.
	dsnArg string
	// builtinSecret: personal data is encrypted under demoSecret.
	builtinSecret bool
}

func newDemo(ctx context.Context, m *Main, b *Backend) (*demo, error) {
	head, err := b.store.Head(ctx)
	if err != nil {
		return nil, err
	}
	if head != 0 {
		return nil, fmt.Errorf("the demo needs an empty store, and %s holds %d events; give another --db or --dsn", b.where, head)
	}
	store := b.store
	d := &demo{m: m, out: m.Stdout, store: store, backend: b}
	// The demo clock starts a day ago, on the hour, and moves one hour per
	// step, so that "the state at an earlier moment" has a moment to show.
	d.now = m.Clock().UTC().Truncate(time.Hour).Add(-24 * time.Hour)
	d.newID = m.NewID
	if d.newID == nil {
		d.newID = uuid.NewRandom
	}
	d.eventID = m.NewEventID
	if d.eventID == nil {
		g := new(uuid.Generator)
		d.eventID = g.New
	}
	secret := m.Getenv(pii.SecretEnv)
	d.builtinSecret = secret == ""
	if d.builtinSecret {
		secret = demoSecret
	}
	d.app, err = budget.NewApp(budget.Config{Store: store, Secret: []byte(secret), Clock: func() time.Time { return d.now },
		NewID: d.eventID, Retry: flux.RetryOptions{MaxAttempts: 5}})
	if err != nil {
		return nil, fmt.Errorf("%w (the demo encrypts personal data under %s)", err, pii.SecretEnv)
	}
	fmt.Fprintf(d.out, "FluxCapacitor demo on the %s store at %s\n", backendName(b.kind), b.where)
	if d.builtinSecret {
		fmt.Fprintf(d.out, "Personal data is encrypted under the demo's built-in secret (%s is not set):\n"+
			"  %s\nSet %s to a secret of your own (at least %d bytes) to use that instead.\n",
			pii.SecretEnv, demoSecret, pii.SecretEnv, pii.MinSecretLength)
	} else {
		fmt.Fprintf(d.out, "Personal data is encrypted under the secret in %s.\n", pii.SecretEnv)
	}
	d.stepHead = head
	return d, nil
}

// say prints a numbered step and returns ctx with the step's request ID
// (the correlation ID of what the step stores: 'flux trace' shows one
// step's story).
func (d *demo) say(ctx context.Context, format string, args ...any) context.Context {
	d.finishStep(ctx)
	d.step++
	fmt.Fprintf(d.out, "\n%d. %s\n", d.step, fmt.Sprintf(format, args...))
	return flux.WithRequestID(ctx, fmt.Sprintf("%s-%02d", d.requestPrefix, d.step))
}

// finishStep prints the correlation IDs of the events the current step
// stored, so that 'flux trace' can tell its story.
func (d *demo) finishStep(ctx context.Context) {
	var ids, requests []string
	seen := map[string]bool{}
	for rec, err := range d.store.ReadAll(ctx, flux.ReadAllOptions{After: d.stepHead}) {
		if err != nil {
			fmt.Fprintf(d.out, "   (cannot read the step's events: %v)\n", err)
			return
		}
		d.stepHead = rec.Position
		switch corr, req := rec.Metadata.CorrelationID, rec.Metadata.RequestID; {
		case corr != "" && !seen[corr]:
			seen[corr] = true
			ids = append(ids, corr)
		case corr == "" && req != "" && !seen["request "+req]:
			seen["request "+req] = true
			requests = append(requests, req)
		}
	}
	for _, id := range ids {
		fmt.Fprintf(d.out, "   correlation ID %s: flux trace %s%s\n", id, id, d.dsnArg)
	}
	for _, id := range requests {
		fmt.Fprintf(d.out, "   request ID %s (no correlation ID): flux events --request %s%s\n", id, id, d.dsnArg)
	}
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
	d.requestPrefix = "demo-" + d.newID()[:8]
	ada, bob := d.newID(), d.newID()
	groceries, trip := d.newID(), d.newID()
	cmds := d.app.Commands

	ctx = d.say(ctx, "Sign-ups: Ada signs up; her e-mail address is claimed in the e-mail registry")
	if err := d.dispatch(ctx, budget.SignUp{UserID: ada, Email: "ada@example.com", Firstname: "Ada", Lastname: "Byron", Language: "en", Consent: true}); err != nil {
		return err
	}
	ctx = d.say(ctx, "Bob tries to sign up with ADA@example.com: the registry refuses it and stores nothing; he signs up with his own address")
	err := cmds.Dispatch(ctx, budget.SignUp{UserID: bob, Email: "ADA@example.com", Firstname: "Bob", Lastname: "Babbage", Language: "en", Consent: true})
	fmt.Fprintf(d.out, "   refused: %v\n", err)
	if err := d.dispatch(ctx, budget.SignUp{UserID: bob, Email: "bob@example.com", Firstname: "Bob", Lastname: "Babbage", Language: "en", Consent: true}); err != nil {
		return err
	}
	before := d.now.Add(-30 * time.Minute)

	ctx = d.say(ctx, "A rename: Ada changes her first name to Augusta")
	if err := d.dispatch(ctx, budget.ChangeFirstname{UserID: ada, Firstname: "Augusta"}); err != nil {
		return err
	}

	ctx = d.say(ctx, "Ada creates two budget envelopes; envelope names are unique per user")
	if err := d.dispatch(ctx, budget.AddBudgetEnvelope{EnvelopeID: groceries, UserID: ada, Name: "Groceries", TargetedAmount: 400_00, Currency: "EUR"}); err != nil {
		return err
	}
	if err := d.dispatch(ctx, budget.AddBudgetEnvelope{EnvelopeID: trip, UserID: ada, Name: "Holidays", TargetedAmount: 1000_00, Currency: "EUR"}); err != nil {
		return err
	}
	err = cmds.Dispatch(ctx, budget.AddBudgetEnvelope{EnvelopeID: d.newID(), UserID: ada, Name: "groceries", TargetedAmount: 1, Currency: "EUR"})
	fmt.Fprintf(d.out, "   a second \"groceries\" is refused: %v\n", err)

	ctx = d.say(ctx, "Another rename: \"Holidays\" becomes \"Summer trip\" (the old name is released, the new one claimed, atomically)")
	if err := d.dispatch(ctx, budget.RenameBudgetEnvelope{EnvelopeID: trip, UserID: ada, Name: "Summer trip"}); err != nil {
		return err
	}

	ctx = d.say(ctx, "Ada credits her groceries envelope nine times; its tenth event writes a snapshot")
	for i := 0; i < 9; i++ {
		if err := d.dispatchQuietly(ctx, budget.CreditBudgetEnvelope{EnvelopeID: groceries, UserID: ada, Amount: 25_00}); err != nil {
			return err
		}
	}
	for info, err := range d.store.ListSnapshots(ctx, "BudgetEnvelope") {
		if err != nil {
			return err
		}
		fmt.Fprintf(d.out, "   snapshot of %s %s at version %d (%d bytes)\n", info.AggregateType, short(info.StreamID), info.Version, info.Size)
	}
	g, err := flux.Load[*budget.BudgetEnvelope](ctx, d.app.Repo, groceries)
	if err != nil {
		return err
	}
	info := g.LoadInfo()
	fmt.Fprintf(d.out, "   loading it now takes the snapshot at version %d and replays %d event(s): balance %s\n", info.SnapshotVersion, info.EventsReplayed, euros(g.CurrentAmount))

	ctx = d.say(ctx, "An upcast event: a credit written by the PHP library (v1, \"creditedAmount\": \"12.50\") is imported")
	if err := d.importV1Credit(ctx, groceries, g.Version(), "12.50"); err != nil {
		return err
	}
	g, err = flux.Load[*budget.BudgetEnvelope](ctx, d.app.Repo, groceries)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "   it is read as BudgetEnvelopeCredited v2 {amount: 1250}: balance %s (stored data unchanged)\n", euros(g.CurrentAmount))

	ctx = d.say(ctx, "A transfer: 80.00 EUR from Groceries to Summer trip, two aggregates in one transaction")
	if err := d.dispatch(ctx, budget.TransferBetweenEnvelopes{TransferID: d.newID(), FromEnvelopeID: groceries, ToEnvelopeID: trip, UserID: ada, Amount: 80_00}); err != nil {
		return err
	}

	ctx = d.say(ctx, "A conflict retried: two clerks credit Summer trip at the same moment")
	first, err := flux.Load[*budget.BudgetEnvelope](ctx, d.app.Repo, trip)
	if err != nil {
		return err
	}
	second, err := flux.Load[*budget.BudgetEnvelope](ctx, d.app.Repo, trip)
	if err != nil {
		return err
	}
	_ = first.Credit(10_00, "")
	_ = second.Credit(20_00, "")
	if err := d.app.Repo.Save(ctx, first); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "   the first clerk's save wins (version %d)\n", first.Version())
	err = d.app.Repo.Save(ctx, second)
	fmt.Fprintf(d.out, "   the second is rejected: %v\n", err)
	fmt.Fprintln(d.out, "   through the command bus, RetryOnConflict reloads and applies it again:")
	if err := d.dispatch(ctx, budget.CreditBudgetEnvelope{EnvelopeID: trip, UserID: ada, Amount: 20_00}); err != nil {
		return err
	}

	ctx = d.say(ctx, "A projection: the envelope-balances read model catches up with the global log")
	if err := d.project(ctx); err != nil {
		return err
	}

	ctx = d.say(ctx, "A time-travel view of Ada, now and as she was at %s", before.Format("2006-01-02 15:04"))
	now, err := flux.Load[*budget.User](ctx, d.app.Repo, ada)
	if err != nil {
		return err
	}
	then, err := flux.LoadAt[*budget.User](ctx, d.app.Repo, ada, before)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "   now:      %s %s <%s>, version %d\n", now.Firstname, now.Lastname, now.Email, now.Version())
	fmt.Fprintf(d.out, "   at %s: %s %s <%s>, version %d\n", before.Format("15:04"), then.Firstname, then.Lastname, then.Email, then.Version())

	ctx = d.say(ctx, "Ada asks to be forgotten: her data key is deleted (crypto-shredding)")
	rep, err := d.app.Protector.Forget(ctx, ada, pii.ForgetOptions{By: "demo DPO", Reason: "demo request"})
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "   %s\n", rep)
	forgotten, _, err := d.store.Forgotten(ctx, ada)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "   recorded: forgotten at %s by %s (%s)\n", forgotten.At.Format("2006-01-02 15:04"), forgotten.By, forgotten.Reason)
	now, err = flux.Load[*budget.User](ctx, d.app.Repo, ada)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "   her user still loads, version %d: first name %q, e-mail %q, forgotten: %v\n", now.Version(), now.Firstname, now.Email, now.LoadInfo().Forgotten)
	g, err = flux.Load[*budget.BudgetEnvelope](ctx, d.app.Repo, groceries)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "   her envelopes hold no personal data and are untouched: Groceries %s\n", euros(g.CurrentAmount))

	ctx = d.say(ctx, "The global log (personal data stays encrypted; the e-mail registry stores only hashes)")
	return d.printLog(ctx)
}

// dispatchQuietly dispatches without reporting.
func (d *demo) dispatchQuietly(ctx context.Context, cmd any) error {
	if err := d.app.Commands.Dispatch(ctx, cmd); err != nil {
		return err
	}
	d.now = d.now.Add(time.Hour)
	return nil
}

// importV1Credit appends a credit in the PHP library's v1 shape.
func (d *demo) importV1Credit(ctx context.Context, envelopeID string, version int64, amount string) error {
	_, err := d.store.Append(ctx, flux.AppendRequest{Streams: []flux.StreamAppend{{
		StreamID: envelopeID, AggregateType: "BudgetEnvelope", Expected: flux.ExpectedVersion(version),
		Events: []flux.EventData{{EventID: d.eventID(), EventName: "BudgetEnvelopeCredited", EventVersion: 1,
			Payload: []byte(`{"creditedAmount":"` + amount + `"}`), Metadata: flux.Metadata{RequestID: "php-import", CorrelationID: "php-import"}, OccurredAt: d.now}},
	}}})
	if err == nil {
		fmt.Fprintf(d.out, "   stored BudgetEnvelopeCredited v1 as version %d of BudgetEnvelope %s\n", version+1, short(envelopeID))
		d.now = d.now.Add(time.Hour)
	}
	return err
}

// project runs the balances projection until it has caught up, into the
// store's database with its checkpoint there, as 'flux projections' shows.
func (d *demo) project(ctx context.Context) error {
	balances, err := d.backend.balanceStore()
	if err != nil {
		return err
	}
	r, err := projection.NewRunner(projection.RunnerConfig{Repository: d.app.Repo, Clock: func() time.Time { return d.now }})
	if err != nil {
		return err
	}
	if err := r.Add(budget.BalancesProjection(balancesProjection, balances)); err != nil {
		return err
	}
	var events int64
	if err := r.Rebuild(ctx, balancesProjection, projection.ReplayOptions{Progress: func(p projection.Progress) { events = p.Events }}); err != nil {
		return err
	}
	views, err := balances.List(ctx, "")
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "   %d envelope events projected:\n", events)
	for _, v := range views {
		fmt.Fprintf(d.out, "   %-12s %10s of %10s (version %d)\n", v.Name, euros(v.CurrentAmount), euros(v.TargetedAmount), v.Version)
	}
	return nil
}

func euros(cents int64) string { return fmt.Sprintf("%d.%02d EUR", cents/100, cents%100) }

var demoEnvelopeRE = regexp.MustCompile(`fluxpii:v1:[A-Za-z0-9_-]+`)

func (d *demo) printLog(ctx context.Context) error {
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "   POS\tSTREAM\tVER\tEVENT\tOCCURRED (UTC)\tPAYLOAD")
	for rec, err := range d.store.ReadAll(ctx, flux.ReadAllOptions{}) {
		if err != nil {
			return err
		}
		payload := demoEnvelopeRE.ReplaceAllString(string(canonicalJSON(rec.Payload)), "fluxpii:v1:…")
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
