package natsrelay_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/natsrelay"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The test domain: accounts, members with personal data, and an aggregate
// whose names need mapping to subject tokens.

type Opened struct {
	Owner string `json:"owner"`
}

type Deposited struct {
	Amount int `json:"amount"`
}

type Account struct {
	flux.Root
	Balance int
}

func (a *Account) Apply(e any) {
	if d, ok := e.(Deposited); ok {
		a.Balance += d.Amount
	}
}

type SignedUp struct {
	UserID string `json:"userId" pii:"subject"`
	Email  string `json:"email" pii:"data"`
	Plan   string `json:"plan"`
}

type Member struct {
	flux.Root
	Plan string
}

func (m *Member) Apply(e any) {
	if s, ok := e.(SignedUp); ok {
		m.Plan = s.Plan
	}
}

type Credited struct {
	Cents int `json:"cents"`
}

type Envelope struct{ flux.Root }

func (*Envelope) Apply(any) {}

const (
	piiSecret = "0123456789abcdef0123456789abcdef"
	// oddAggregate and oddEvent hold characters a subject token may not.
	oddAggregate = "Budget Envelope"
	oddEvent     = "credited.v2>*"
)

type env struct {
	store *memstore.Store
	repo  *flux.Repository
}

func newEnv(t testing.TB) *env {
	t.Helper()
	reg, err := flux.NewRegistry(
		flux.AggregateType("Account", func() *Account { return new(Account) },
			flux.EventType[Opened]("Opened", 1),
			flux.EventType[Deposited]("Deposited", 1)),
		flux.AggregateType("Member", func() *Member { return new(Member) },
			flux.EventType[SignedUp]("SignedUp", 1)),
		flux.AggregateType(oddAggregate, func() *Envelope { return new(Envelope) },
			flux.EventType[Credited](oddEvent, 1)),
	)
	if err != nil {
		t.Fatal(err)
	}
	store := memstore.New()
	prot, err := pii.New(pii.Config{Keys: store, Secret: []byte(piiSecret)})
	if err != nil {
		t.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: store, Registry: reg, Protector: prot})
	if err != nil {
		t.Fatal(err)
	}
	return &env{store: store, repo: repo}
}

// openAccount saves a new account with an Opened and one Deposited per
// amount.
func (e *env) openAccount(ctx context.Context, t testing.TB, id string, amounts ...int) {
	t.Helper()
	a := new(Account)
	a.SetID(id)
	flux.Raise(a, Opened{Owner: id})
	for _, n := range amounts {
		flux.Raise(a, Deposited{Amount: n})
	}
	if err := e.repo.Save(ctx, a); err != nil {
		t.Fatal(err)
	}
}

func (e *env) head(t testing.TB) int64 {
	t.Helper()
	h, err := e.store.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (e *env) records(t testing.TB) []flux.Record {
	t.Helper()
	var out []flux.Record
	for rec, err := range e.store.ReadAll(context.Background(), flux.ReadAllOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
	return out
}

func (e *env) checkpoint(t testing.TB, name string) int64 {
	t.Helper()
	cp, err := e.store.LoadCheckpoint(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return cp.Position
}

// natsURL returns FLUX_TEST_NATS_URL, skipping the test when it is unset
// (failing when FLUX_TEST_REQUIRE is set).
func natsURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("FLUX_TEST_NATS_URL")
	if url == "" {
		if os.Getenv("FLUX_TEST_REQUIRE") != "" {
			t.Fatal("FLUX_TEST_NATS_URL is not set and FLUX_TEST_REQUIRE is: the NATS suite must run")
		}
		t.Skip("FLUX_TEST_NATS_URL is not set; set it (e.g. nats://127.0.0.1:4222, a server with JetStream) to run the NATS tests")
	}
	return url
}

// connect opens a relay-fit connection to url, closed at cleanup; an
// unreachable server fails the test.
func connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	opts := append(natsrelay.ConnOptions(), nats.ReconnectWait(50*time.Millisecond), nats.Timeout(2*time.Second))
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect to NATS at %s (FLUX_TEST_NATS_URL): %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func jetStream(t testing.TB, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// unique returns a name unique to this run, usable as a stream name and a
// subject token.
func unique(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// testStream returns a fresh stream name and subject prefix, and deletes
// the stream at cleanup.
func testStream(t testing.TB, js jetstream.JetStream) (stream, prefix string) {
	t.Helper()
	id := unique("")
	stream, prefix = "FLUXTEST_"+id, "fluxtest."+id
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Logf("delete stream %s: %v", stream, err)
		}
	})
	return stream, prefix
}

// startRunner runs runner until cleanup.
func startRunner(t testing.TB, runner *projection.Runner) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = runner.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func runnerConfig(e *env, logger *slog.Logger) projection.RunnerConfig {
	return projection.RunnerConfig{
		Repository: e.repo, PollInterval: 5 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, Logger: logger,
	}
}

func status(t testing.TB, r *projection.Runner, name string) projection.Status {
	t.Helper()
	all, err := r.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("runner has no projection %q", name)
	return projection.Status{}
}

// waitFor polls cond every few milliseconds until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readStream consumes the whole stream in order.
func readStream(t testing.TB, js jetstream.JetStream, stream string) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	want := int(s.CachedInfo().State.Msgs)
	if want == 0 {
		return nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for len(out) < want {
		batch, err := c.Fetch(min(want-len(out), 1000), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := len(out)
		for m := range batch.Messages() {
			out = append(out, m)
		}
		if err := batch.Error(); err != nil {
			t.Fatalf("fetch after %d of %d messages: %v", len(out), want, err)
		}
		if len(out) == n {
			t.Fatalf("fetch returned nothing after %d of %d messages", n, want)
		}
	}
	return out
}

// syncBuffer is a log sink safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newLogger(buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// server is a private nats-server with JetStream, for tests that stop it.
type server struct {
	t    testing.TB
	port int
	dir  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

const natsServerBin = "/usr/sbin/nats-server"

// startServer starts a private nats-server on a free port with its store
// in a temporary directory, stopped at cleanup.
func startServer(t testing.TB) *server {
	t.Helper()
	bin := natsServerBin
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("nats-server"); err != nil {
			t.Fatalf("this test runs a private nats-server and found none at %s or on PATH: %v", natsServerBin, err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	s := &server{t: t, port: port, dir: t.TempDir()}
	s.start(bin)
	t.Cleanup(func() { s.stop(syscall.SIGKILL) })
	return s
}

func (s *server) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

func (s *server) start(bin string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", fmt.Sprint(s.port), "-js", "-sd", s.dir)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start nats-server: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return
		}
		select {
		case <-done:
			s.t.Fatalf("nats-server exited at start: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("nats-server did not listen on port %d within 15s: %s", s.port, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends sig and waits for the server to exit (killing it after 10s).
func (s *server) stop(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

func (s *server) restart() {
	s.t.Helper()
	bin := natsServerBin
	if _, err := os.Stat(bin); err != nil {
		bin, _ = exec.LookPath("nats-server")
	}
	s.start(bin)
}

// auditedCheckpoints wraps a checkpoint store and, before every save,
// runs check: the test's proof that a checkpoint never gets ahead of the
// broker.
type auditedCheckpoints struct {
	projection.CheckpointStore
	check func(cp projection.Checkpoint) error

	mu    sync.Mutex
	saves int
	errs  []error
}

func (a *auditedCheckpoints) SaveCheckpoint(ctx context.Context, cp projection.Checkpoint) error {
	err := a.check(cp)
	a.mu.Lock()
	a.saves++
	if err != nil {
		a.errs = append(a.errs, err)
	}
	a.mu.Unlock()
	return a.CheckpointStore.SaveCheckpoint(ctx, cp)
}

func (a *auditedCheckpoints) result() (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.saves, errors.Join(a.errs...)
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// recordingObserver records the relay batches it sees.
type recordingObserver struct {
	mu      sync.Mutex
	batches []flux.Operation
	ends    []flux.Outcome
}

func (o *recordingObserver) Start(ctx context.Context, op flux.Operation) (context.Context, func(flux.Outcome)) {
	return ctx, func(out flux.Outcome) {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.batches = append(o.batches, op)
		o.ends = append(o.ends, out)
	}
}

func (o *recordingObserver) Notice(context.Context, flux.Notice) {}

func (o *recordingObserver) TraceMetadata(context.Context) map[string]string { return nil }

// published sums the events of the successful relay batches and returns
// the last position acknowledged, and the failed batches.
func (o *recordingObserver) published() (events int, last int64, failed int, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, op := range o.batches {
		if op.Kind != flux.OpRelayPublish || op.Name == "" || len(op.Links) != op.Events {
			return 0, 0, 0, fmt.Errorf("batch %d: %+v", i, op)
		}
		if o.ends[i].Err != nil {
			failed++
			continue
		}
		events += op.Events
		last = max(last, o.ends[i].Position)
	}
	return events, last, failed, nil
}
