package fluxui_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/fluxui"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
)

// Ledger is a snapshotted aggregate; Person carries personal data.
type Ledger struct {
	flux.Root
	Balance int      `json:"balance"`
	Owner   string   `json:"owner"`
	Tags    []string `json:"tags"`
}

type Booked struct {
	Amount int    `json:"amount"`
	Tag    string `json:"tag,omitempty"`
}

type Renamed struct {
	Owner string `json:"owner"`
}

func (l *Ledger) Apply(e any) {
	switch e := e.(type) {
	case Booked:
		l.Balance += e.Amount
		if e.Tag != "" {
			l.Tags = append(l.Tags, e.Tag)
		}
	case Renamed:
		l.Owner = e.Owner
	}
}

func (l *Ledger) SnapshotState() any                           { return l }
func (l *Ledger) RestoreSnapshot(decode func(any) error) error { return decode(l) }

type Person struct {
	flux.Root
	Email string `json:"email"`
}

type Registered struct {
	PersonID string `json:"personId" pii:"subject"`
	Email    string `json:"email" pii:"data"`
}

func (p *Person) Apply(e any) {
	if r, ok := e.(Registered); ok {
		p.Email = r.Email
	}
}

type fixture struct {
	store  *memstore.Store
	repo   *flux.Repository
	prot   *pii.Protector
	runner *projection.Runner
	seen   *atomic.Int64
}

const secret = "0123456789abcdef0123456789abcdef-console-test"

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{store: memstore.New(), seen: new(atomic.Int64)}
	reg, err := flux.NewRegistry(
		flux.AggregateType("Ledger", func() *Ledger { return new(Ledger) },
			flux.EventType[Booked]("Booked", 1), flux.EventType[Renamed]("Renamed", 1),
			flux.Snapshots(flux.SnapshotPolicy{Every: 10, Keep: 2})),
		flux.AggregateType("Person", func() *Person { return new(Person) }, flux.EventType[Registered]("Registered", 1)),
	)
	if err != nil {
		t.Fatal(err)
	}
	if f.prot, err = pii.New(pii.Config{Keys: f.store, Secret: []byte(secret), Replacement: "[forgotten]"}); err != nil {
		t.Fatal(err)
	}
	if f.repo, err = flux.NewRepository(flux.Config{Store: f.store, Registry: reg, Protector: f.prot}); err != nil {
		t.Fatal(err)
	}
	if f.runner, err = projection.NewRunner(projection.RunnerConfig{Repository: f.repo}); err != nil {
		t.Fatal(err)
	}
	counter := projection.New("ledger-count", func(ctx context.Context, e flux.Envelope) error { f.seen.Add(1); return nil },
		projection.OnReset(func(context.Context) error { f.seen.Store(0); return nil }))
	if err := f.runner.Add(counter); err != nil {
		t.Fatal(err)
	}
	l := new(Ledger)
	l.SetID("ledger-1")
	for i := 1; i <= 25; i++ {
		c := flux.WithCorrelationID(ctx, fmt.Sprintf("corr-%d", i))
		if i == 25 {
			flux.Raise(l, Renamed{Owner: "ada"})
		} else {
			flux.Raise(l, Booked{Amount: i, Tag: map[bool]string{true: "t"}[i%5 == 0]})
		}
		if err := f.repo.Save(c, l); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"ledger-2", "ledger-3", "other-1"} {
		o := new(Ledger)
		o.SetID(id)
		flux.Raise(o, Booked{Amount: 1})
		if err := f.repo.Save(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	// A trace: one command's event, and an event caused by it.
	c := flux.WithCausationID(flux.WithCorrelationID(ctx, "order-7"), "cmd-1")
	p := new(Person)
	p.SetID("person-1")
	flux.Raise(p, Registered{PersonID: "person-1", Email: "ada@example.com"})
	if err := f.repo.Save(c, p); err != nil {
		t.Fatal(err)
	}
	var first string
	for rec, err := range f.store.ReadStream(ctx, "person-1", flux.ReadStreamOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		first = rec.EventID
	}
	c = flux.WithCausationID(flux.WithCorrelationID(ctx, "order-7"), first)
	o := new(Ledger)
	o.SetID("ledger-of-person-1")
	flux.Raise(o, Booked{Amount: 100})
	if err := f.repo.Save(c, o); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) console(t testing.TB, mod func(*fluxui.Config)) *fluxui.Console {
	t.Helper()
	cfg := fluxui.Config{Store: f.store, Repository: f.repo, Runner: f.runner, Protector: f.prot, PollInterval: 10 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	c, err := fluxui.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

type answer struct {
	status int
	body   string
	header http.Header
}

func get(t testing.TB, h http.Handler, target string) answer {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.Host = "127.0.0.1:8080"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return answer{w.Code, html.UnescapeString(w.Body.String()), w.Header()}
}

func post(t testing.TB, h http.Handler, target string, form url.Values) answer {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	req.Host = "127.0.0.1:8080"
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return answer{w.Code, html.UnescapeString(w.Body.String()), w.Header()}
}

func getJSON[T any](t testing.TB, h http.Handler, target string) T {
	t.Helper()
	a := get(t, h, target)
	if a.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", target, a.status, a.body)
	}
	var v T
	if err := json.Unmarshal([]byte(a.body), &v); err != nil {
		t.Fatalf("GET %s: %v in %s", target, err, a.body)
	}
	return v
}

// csrfOf reads the CSRF token from a page's form.
func csrfOf(t testing.TB, page string) string {
	t.Helper()
	_, rest, ok := strings.Cut(page, `name="csrf" value="`)
	if !ok {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	tok, _, _ := strings.Cut(rest, `"`)
	return tok
}

func TestPages(t *testing.T) {
	f := newFixture(t)
	h := f.console(t, nil)
	for _, tc := range []struct{ path, want string }{
		{"/streams", "ledger-1"},
		{"/streams?prefix=ledger-&type=Ledger", "ledger-3"},
		{"/stream?id=ledger-1", "Booked"},
		{"/state?id=ledger-1&version=3", "balance"},
		{"/state?id=ledger-1&at=2100-01-01T00:00:00Z", "Renamed"},
		{"/diff?id=ledger-1&from=24&to=25", "changed"},
		{"/trace?correlation=order-7", "Registered"},
		{"/trace", "Correlation ID"},
		{"/tail", "Live tail"},
		{"/projections", "ledger-count"},
		{"/forget", "Forget a data subject"},
		{"/static/app.js", "EventSource"},
		{"/static/style.css", "tree"},
	} {
		a := get(t, h, tc.path)
		if a.status != http.StatusOK || !strings.Contains(a.body, tc.want) {
			t.Errorf("GET %s: %d, want 200 with %q:\n%.600s", tc.path, a.status, tc.want, a.body)
		}
	}
	if a := get(t, h, "/"); a.status != http.StatusFound || a.header.Get("Location") != "/streams" {
		t.Errorf("GET /: %d to %q, want a redirect to /streams", a.status, a.header.Get("Location"))
	}
	a := get(t, h, "/streams")
	if csp := a.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
}

type streamsAnswer struct {
	Streams []struct {
		StreamID string `json:"stream_id"`
		Version  int64  `json:"version"`
	} `json:"streams"`
	Next    string `json:"next"`
	Events  int64  `json:"events"`
	Count   int    `json:"count"`
	Counted bool   `json:"counted"`
}

func ids(v streamsAnswer) string {
	var s []string
	for _, r := range v.Streams {
		s = append(s, r.StreamID)
	}
	return strings.Join(s, ",")
}

func TestStreamListPagesAndSearches(t *testing.T) {
	f := newFixture(t)
	h := f.console(t, nil)
	v := getJSON[streamsAnswer](t, h, "/api/streams?limit=2")
	if ids(v) != "ledger-1,ledger-2" || v.Next != "ledger-2" || v.Events != 30 {
		t.Fatalf("first page: %s next %q events %d", ids(v), v.Next, v.Events)
	}
	if v.Streams[0].Version != 25 {
		t.Errorf("ledger-1 version %d, want 25", v.Streams[0].Version)
	}
	v = getJSON[streamsAnswer](t, h, "/api/streams?limit=2&after=ledger-2")
	if ids(v) != "ledger-3,ledger-of-person-1" || v.Next != "ledger-of-person-1" {
		t.Fatalf("second page: %s next %q", ids(v), v.Next)
	}
	v = getJSON[streamsAnswer](t, h, "/api/streams?limit=2&after=ledger-of-person-1")
	if ids(v) != "other-1,person-1" || v.Next != "" {
		t.Fatalf("last page: %s next %q", ids(v), v.Next)
	}
	// An exact ID is found, with the streams that extend it.
	v = getJSON[streamsAnswer](t, h, "/api/streams?prefix=ledger-1&count=1")
	if ids(v) != "ledger-1" || !v.Counted || v.Count != 1 {
		t.Fatalf("prefix ledger-1: %s count %d", ids(v), v.Count)
	}
	v = getJSON[streamsAnswer](t, h, "/api/streams?prefix=ledger&count=1")
	if ids(v) != "ledger-1,ledger-2,ledger-3,ledger-of-person-1" || v.Count != 4 {
		t.Fatalf("prefix ledger: %s count %d", ids(v), v.Count)
	}
	v = getJSON[streamsAnswer](t, h, "/api/streams?type=Person")
	if ids(v) != "person-1" {
		t.Fatalf("type Person: %s", ids(v))
	}
	v = getJSON[streamsAnswer](t, h, "/api/streams?prefix=zzz")
	if len(v.Streams) != 0 {
		t.Fatalf("prefix zzz: %s", ids(v))
	}
}

type stateAnswer struct {
	Version         int64 `json:"version"`
	MaxVersion      int64 `json:"max_version"`
	State           map[string]any
	SnapshotVersion int64  `json:"snapshot_version"`
	EventsReplayed  int    `json:"events_replayed"`
	Load            string `json:"load"`
	Hidden          bool   `json:"personal_data_hidden"`
	Event           struct {
		Event   string          `json:"event"`
		Payload json.RawMessage `json:"payload"`
	} `json:"event"`
}

func TestTimeTravel(t *testing.T) {
	f := newFixture(t)
	h := f.console(t, nil)
	first := getJSON[stateAnswer](t, h, "/api/state?id=ledger-1&version=1")
	last := getJSON[stateAnswer](t, h, "/api/state?id=ledger-1")
	if first.Version != 1 || first.State["balance"] != 1.0 || first.SnapshotVersion != 0 || first.EventsReplayed != 1 {
		t.Errorf("version 1: %+v", first)
	}
	if last.Version != 25 || last.MaxVersion != 25 || last.State["balance"] != 300.0 || last.State["owner"] != "ada" || last.Event.Event != "Renamed" {
		t.Errorf("version 25: %+v", last)
	}
	if last.SnapshotVersion != 20 || last.EventsReplayed != 5 || !strings.Contains(last.Load, "snapshot at version 20") {
		t.Errorf("version 25 should load from the snapshot at 20: %+v", last)
	}
	at := getJSON[stateAnswer](t, h, "/api/state?id=ledger-1&at="+url.QueryEscape(time.Now().Add(time.Hour).UTC().Format(time.RFC3339)))
	if at.Version != 25 {
		t.Errorf("state at a later time: version %d, want 25", at.Version)
	}
}

func TestDiffHighlightsChangedFields(t *testing.T) {
	f := newFixture(t)
	h := f.console(t, nil)
	type diffAnswer struct {
		Changed int `json:"changed"`
		Fields  []struct {
			Path, Value, Before, Change string
		} `json:"fields"`
	}
	d := getJSON[diffAnswer](t, h, "/api/diff?id=ledger-1&from=4&to=5")
	changes := map[string]string{}
	for _, fl := range d.Fields {
		changes[fl.Path] = fl.Change + ":" + fl.Before + "->" + fl.Value
	}
	if changes["balance"] != "changed:10->15" || changes["tags"] != "changed:null->" && !strings.HasPrefix(changes["tags[0]"], "added") {
		t.Errorf("diff 4->5: %v", changes)
	}
	if changes["owner"] != `:""->""` {
		t.Errorf("unchanged owner: %q", changes["owner"])
	}
	// Backwards, across the snapshot at 20: the same as two loads.
	d = getJSON[diffAnswer](t, h, "/api/diff?id=ledger-1&from=25&to=3")
	changes = map[string]string{}
	for _, fl := range d.Fields {
		changes[fl.Path] = fl.Change + ":" + fl.Before + "->" + fl.Value
	}
	if changes["balance"] != "changed:300->6" || changes["owner"] != `changed:"ada"->""` || changes["tags[3]"] != `removed:"t"->` {
		t.Errorf("diff 25->3: %v", changes)
	}
	page := get(t, h, "/diff?id=ledger-1&from=24&to=25")
	if !strings.Contains(page.body, `<tr class="changed"><td>owner`) {
		t.Errorf("the diff page does not highlight owner:\n%s", page.body)
	}
}

func TestTraceTree(t *testing.T) {
	f := newFixture(t)
	h := f.console(t, nil)
	type node struct {
		ID    string `json:"id"`
		Event *struct {
			Event    string `json:"event"`
			StreamID string `json:"stream_id"`
		} `json:"event"`
		Children []node `json:"children"`
	}
	v := getJSON[struct {
		Events, Streams int
		Roots           []node
	}](t, h, "/api/trace?correlation=order-7")
	if v.Events != 2 || v.Streams != 2 || len(v.Roots) != 1 {
		t.Fatalf("trace: %+v", v)
	}
	cmd := v.Roots[0]
	if cmd.ID != "cmd-1" || cmd.Event != nil || len(cmd.Children) != 1 {
		t.Fatalf("root should be command cmd-1 with one event: %+v", cmd)
	}
	reg := cmd.Children[0]
	if reg.Event.Event != "Registered" || len(reg.Children) != 1 || reg.Children[0].Event.StreamID != "ledger-of-person-1" {
		t.Fatalf("Registered should have caused the ledger's event: %+v", reg)
	}
}

func TestPersonalData(t *testing.T) {
	f := newFixture(t)
	hidden := f.console(t, nil)
	shown := f.console(t, func(c *fluxui.Config) { c.ShowPersonalData = true })
	for _, path := range []string{"/stream?id=person-1", "/api/stream?id=person-1", "/api/state?id=person-1", "/api/trace?correlation=order-7"} {
		a := get(t, hidden, path)
		if a.status != 200 || strings.Contains(a.body, "ada@example.com") || !strings.Contains(a.body, "[encrypted]") || strings.Contains(a.body, pii.EnvelopePrefix) {
			t.Errorf("hidden %s: %d\n%s", path, a.status, a.body)
		}
		a = get(t, shown, path)
		if a.status != 200 || !strings.Contains(a.body, "ada@example.com") {
			t.Errorf("shown %s: %d\n%s", path, a.status, a.body)
		}
	}
	if _, err := fluxui.New(fluxui.Config{Store: f.store, ShowPersonalData: true}); err == nil {
		t.Error("ShowPersonalData without a repository was accepted")
	}
}

func TestWithoutRegistry(t *testing.T) {
	f := newFixture(t)
	h := f.console(t, func(c *fluxui.Config) { c.Repository, c.Runner, c.Protector = nil, nil, nil })
	for _, path := range []string{"/state?id=ledger-1", "/api/diff?id=ledger-1"} {
		a := get(t, h, path)
		if a.status != http.StatusNotImplemented || !strings.Contains(a.body, "needs the application's registry") {
			t.Errorf("%s without registry: %d %s", path, a.status, a.body)
		}
	}
	a := get(t, h, "/stream?id=person-1")
	if a.status != 200 || !strings.Contains(a.body, "[encrypted]") || !strings.Contains(a.body, "personId") {
		t.Errorf("raw payloads without registry: %d\n%s", a.status, a.body)
	}
	if a := get(t, h, "/api/projections"); a.status != 200 {
		t.Errorf("projections without runner: %d %s", a.status, a.body)
	}
}

func TestBadInput(t *testing.T) {
	f := newFixture(t)
	h := f.console(t, nil)
	for _, tc := range []struct {
		path   string
		status int
		want   string
	}{
		{"/stream?id=nope", 404, `unknown stream "nope"`},
		{"/api/stream?id=nope", 404, `unknown stream`},
		{"/stream", 400, "give the stream"},
		{"/stream?id=%01x", 400, "control character"},
		{"/stream?id=ledger-1&from=99999999999999999999", 400, "whole number"},
		{"/state?id=ledger-1&version=9223372036854775807", 404, "has 25 events: no version 9223372036854775807"},
		{"/api/state?id=ledger-1&version=0", 400, "between 1 and 25"},
		{"/api/state?id=ledger-1&version=-3", 400, "between 1 and 25"},
		{"/api/state?id=ledger-1&version=abc", 400, "whole number"},
		{"/state?id=ledger-1&at=yesterday", 400, "not understood"},
		{"/api/state?id=ledger-1&at=1999-01-01", 404, "no events at or before"},
		{"/api/state?id=ledger-1&at=2020-01-01&version=2", 400, "not both"},
		{"/api/diff?id=ledger-1&from=1&to=26", 404, "no to 26"},
		{"/api/streams?limit=100000", 400, "limit must be between"},
		{"/api/streams?limit=x", 400, "whole number"},
		{"/api/trace?correlation=none", 404, "no events with correlation"},
		{"/api/tail?after=-1", 400, "global position"},
		{"/no/such/page", 404, "no page"},
	} {
		a := get(t, h, tc.path)
		if a.status != tc.status || !strings.Contains(a.body, tc.want) {
			t.Errorf("GET %s: %d, want %d with %q:\n%.400s", tc.path, a.status, tc.status, tc.want, a.body)
		}
		if strings.Contains(a.body, "goroutine ") || strings.Contains(a.body, ".go:") {
			t.Errorf("GET %s: the answer shows a stack trace:\n%s", tc.path, a.body)
		}
	}
}

func TestWritesNeedAllowWritesAndCSRF(t *testing.T) {
	f := newFixture(t)
	// Read-only: refused even with the right CSRF token.
	ro := f.console(t, nil)
	roPage := get(t, ro, "/streams")
	_ = roPage
	rw := f.console(t, func(c *fluxui.Config) { c.AllowWrites = true })
	page := get(t, rw, "/projections")
	tok := csrfOf(t, page.body)

	if a := post(t, ro, "/projections/rebuild", url.Values{"name": {"ledger-count"}, "confirm": {"ledger-count"}, "csrf": {tok}}); a.status != 403 || !strings.Contains(a.body, "read-only") {
		t.Errorf("rebuild on a read-only console: %d %s", a.status, a.body)
	}
	if a := post(t, ro, "/forget", url.Values{"subject": {"person-1"}, "confirm": {"person-1"}, "csrf": {tok}}); a.status != 403 || !strings.Contains(a.body, "read-only") {
		t.Errorf("forget on a read-only console: %d %s", a.status, a.body)
	}
	if strings.Contains(get(t, ro, "/projections").body, `name="csrf"`) {
		t.Error("a read-only console offers a rebuild form")
	}
	for _, form := range []url.Values{
		{"name": {"ledger-count"}, "confirm": {"ledger-count"}},
		{"name": {"ledger-count"}, "confirm": {"ledger-count"}, "csrf": {"forged"}},
	} {
		if a := post(t, rw, "/projections/rebuild", form); a.status != 403 || !strings.Contains(a.body, "CSRF") {
			t.Errorf("rebuild without a valid CSRF token: %d %s", a.status, a.body)
		}
		if a := post(t, rw, "/forget", url.Values{"subject": {"person-1"}, "confirm": {"person-1"}, "csrf": form["csrf"]}); a.status != 403 || !strings.Contains(a.body, "CSRF") {
			t.Errorf("forget without a valid CSRF token: %d %s", a.status, a.body)
		}
	}
	// Cross-origin with the token: refused.
	req := httptest.NewRequest(http.MethodPost, "/projections/rebuild", strings.NewReader(url.Values{"name": {"ledger-count"}, "confirm": {"ledger-count"}, "csrf": {tok}}.Encode()))
	req.Host = "127.0.0.1:8080"
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "http://evil.example")
	w := httptest.NewRecorder()
	rw.ServeHTTP(w, req)
	if w.Code != 403 {
		t.Errorf("cross-origin rebuild: %d %s", w.Code, w.Body)
	}
	if a := get(t, rw, "/projections/rebuild"); a.status != http.StatusMethodNotAllowed && a.status != 404 {
		t.Errorf("GET of a write: %d", a.status)
	}
	if f.seen.Load() != 0 {
		t.Fatal("a refused rebuild ran")
	}
}

func TestRebuildProjection(t *testing.T) {
	f := newFixture(t)
	h := f.console(t, func(c *fluxui.Config) { c.AllowWrites = true })
	tok := csrfOf(t, get(t, h, "/projections").body)
	if a := post(t, h, "/projections/rebuild", url.Values{"name": {"ledger-count"}, "confirm": {"ledger-"}, "csrf": {tok}}); a.status != 400 || !strings.Contains(a.body, "not confirmed") {
		t.Errorf("rebuild with a wrong confirmation: %d %s", a.status, a.body)
	}
	if a := post(t, h, "/projections/rebuild", url.Values{"name": {"nope"}, "confirm": {"nope"}, "csrf": {tok}}); a.status != 404 {
		t.Errorf("rebuild of an unknown projection: %d %s", a.status, a.body)
	}
	a := post(t, h, "/projections/rebuild", url.Values{"name": {"ledger-count"}, "confirm": {"ledger-count"}, "csrf": {tok}})
	if a.status != 200 || !strings.Contains(a.body, "rebuilt ledger-count up to position 30") {
		t.Fatalf("rebuild: %d %s", a.status, a.body)
	}
	if n := f.seen.Load(); n != 30 {
		t.Errorf("the projection saw %d events, want 30", n)
	}
	type projAnswer struct {
		Projections []struct {
			Name      string
			Position  int64
			LagEvents int64 `json:"lag_events"`
		}
	}
	v := getJSON[projAnswer](t, h, "/api/projections")
	if len(v.Projections) != 1 || v.Projections[0].Position != 30 || v.Projections[0].LagEvents != 0 {
		t.Errorf("status after rebuild: %+v", v)
	}
}

func TestForget(t *testing.T) {
	f := newFixture(t)
	h := f.console(t, func(c *fluxui.Config) { c.AllowWrites = true; c.ShowPersonalData = true })
	tok := csrfOf(t, get(t, h, "/forget?subject=person-1").body)
	if a := post(t, h, "/forget", url.Values{"subject": {"person-1"}, "confirm": {"person-2"}, "csrf": {tok}}); a.status != 400 || !strings.Contains(a.body, "nothing was forgotten") {
		t.Errorf("forget with a wrong confirmation: %d %s", a.status, a.body)
	}
	if !strings.Contains(get(t, h, "/api/stream?id=person-1").body, "ada@example.com") {
		t.Fatal("personal data unreadable before forgetting")
	}
	a := post(t, h, "/forget", url.Values{"subject": {"person-1"}, "confirm": {"person-1"}, "by": {"dpo"}, "csrf": {tok}})
	if a.status != 200 || !strings.Contains(a.body, "deleted the data key") {
		t.Fatalf("forget: %d %s", a.status, a.body)
	}
	if b := get(t, h, "/api/stream?id=person-1").body; strings.Contains(b, "ada@example.com") || !strings.Contains(b, "[forgotten]") {
		t.Errorf("after forgetting: %s", b)
	}
}

func TestTokenAndHost(t *testing.T) {
	f := newFixture(t)
	open := f.console(t, nil)
	req := httptest.NewRequest(http.MethodGet, "/streams", nil)
	req.Host = "attacker.example:8080" // DNS rebinding
	w := httptest.NewRecorder()
	open.ServeHTTP(w, req)
	if w.Code != 403 {
		t.Errorf("a non-loopback Host without a token: %d", w.Code)
	}
	for _, host := range []string{"localhost:8080", "[::1]:8080", "127.0.0.1"} {
		req := httptest.NewRequest(http.MethodGet, "/streams", nil)
		req.Host = host
		w := httptest.NewRecorder()
		open.ServeHTTP(w, req)
		if w.Code != 200 {
			t.Errorf("Host %s: %d", host, w.Code)
		}
	}

	h := f.console(t, func(c *fluxui.Config) { c.Token = "s3cret" })
	do := func(target string, mod func(*http.Request)) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Host = "console.internal:8080"
		if mod != nil {
			mod(req)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	if w := do("/streams", nil); w.Code != 401 {
		t.Errorf("no token: %d", w.Code)
	}
	if w := do("/streams?token=wrong", nil); w.Code != 401 {
		t.Errorf("wrong token: %d", w.Code)
	}
	w = do("/streams?token=s3cret&prefix=ledger", nil)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/streams?prefix=ledger" {
		t.Fatalf("token in the URL: %d to %q", w.Code, w.Header().Get("Location"))
	}
	ck := w.Result().Cookies()
	if len(ck) != 1 || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie: %+v", ck)
	}
	if w := do("/streams", func(r *http.Request) { r.AddCookie(ck[0]) }); w.Code != 200 {
		t.Errorf("with the cookie: %d", w.Code)
	}
	if w := do("/api/streams", func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") }); w.Code != 200 {
		t.Errorf("with a bearer token: %d", w.Code)
	}
}

func TestCheckAddr(t *testing.T) {
	for _, tc := range []struct {
		addr, token string
		ok          bool
	}{
		{"127.0.0.1:8080", "", true},
		{"localhost:8080", "", true},
		{"[::1]:8080", "", true},
		{":8080", "", false},
		{"0.0.0.0:8080", "", false},
		{"192.168.1.5:8080", "", false},
		{"0.0.0.0:8080", "tok", true},
		{"8080", "", false},
	} {
		err := fluxui.CheckAddr(tc.addr, tc.token)
		if (err == nil) != tc.ok {
			t.Errorf("CheckAddr(%q, %q) = %v", tc.addr, tc.token, err)
		}
	}
}

// panicStore fails every read with a panic: the console must answer with a
// message, never a stack trace.
type panicStore struct{ *memstore.Store }

func (panicStore) Head(context.Context) (int64, error) { panic("boom at store.go:42") }

func TestPanicIsAMessage(t *testing.T) {
	c, err := fluxui.New(fluxui.Config{Store: panicStore{memstore.New()}})
	if err != nil {
		t.Fatal(err)
	}
	a := get(t, c, "/streams")
	if a.status != 500 || strings.Contains(a.body, "boom") || !strings.Contains(a.body, "internal error") {
		t.Errorf("panic: %d %s", a.status, a.body)
	}
}

type failingStore struct{ *memstore.Store }

func (failingStore) Head(context.Context) (int64, error) {
	return 0, errors.New("database is locked")
}

func TestStoreErrorIsAMessage(t *testing.T) {
	c, err := fluxui.New(fluxui.Config{Store: failingStore{memstore.New()}})
	if err != nil {
		t.Fatal(err)
	}
	a := get(t, c, "/api/streams")
	if a.status != 500 || !strings.Contains(a.body, `"error": "database is locked"`) {
		t.Errorf("store error: %d %s", a.status, a.body)
	}
}

func TestLiveTail(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.console(t, nil))
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/tail?after=28", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	sc := bufio.NewScanner(res.Body)
	var ids []string
	next := func() {
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
				ids = append(ids, id)
				return
			}
		}
		t.Fatalf("stream ended: %v", sc.Err())
	}
	next()
	next()
	// A new event arrives while the browser listens.
	l := new(Ledger)
	l.SetID("late")
	flux.Raise(l, Booked{Amount: 1})
	if err := f.repo.Save(ctx, l); err != nil {
		t.Fatal(err)
	}
	next()
	if strings.Join(ids, ",") != "29,30,31" {
		t.Errorf("ids %v, want 29,30,31", ids)
	}
}

// FuzzRequests sends arbitrary query strings to every page: the console
// answers with a page or a message, never a failure of its own (5xx) or a
// stack trace.
func FuzzRequests(f *testing.F) {
	fx := newFixture(f)
	h := fx.console(f, nil)
	for _, seed := range []string{"id=ledger-1&version=3", "id=ledger-1&at=2026-01-02 10:00", "id=ledger-1&from=25&to=1",
		"prefix=led&type=Ledger&after=ledger-1&limit=2&count=1", "correlation=order-7", "id=%ff&version=-1", "at=9999-99-99"} {
		for page := range 7 {
			f.Add(uint8(page), seed)
		}
	}
	pages := []string{"/streams", "/stream", "/state", "/diff", "/trace", "/projections", "/forget"}
	f.Fuzz(func(t *testing.T, page uint8, query string) {
		for _, prefix := range []string{"", "/api"} {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.URL.Path = prefix + pages[int(page)%len(pages)]
			req.URL.RawQuery = query
			req.Host = "127.0.0.1:8080"
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code >= 500 || strings.Contains(w.Body.String(), "goroutine ") {
				t.Fatalf("GET %s?%s: %d\n%s", req.URL.Path, query, w.Code, w.Body)
			}
		}
	})
}
