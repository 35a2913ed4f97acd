package flux

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/fluxcapacitor/flux/uuid"
)

// Errors of the buses.
var (
	// ErrUnknownCommand is returned by Dispatch for a command type without
	// a handler. Register one with HandleCommand.
	ErrUnknownCommand = errors.New("flux: unknown command")
	// ErrUnknownQuery is returned by Ask for a query type without a
	// handler. Register one with HandleQuery.
	ErrUnknownQuery = errors.New("flux: unknown query")
	// ErrDuplicateHandler is returned when a second handler is registered
	// for one command or query type.
	ErrDuplicateHandler = errors.New("flux: duplicate handler")
	// ErrResultType is returned when a result does not have the type the
	// caller asked for.
	ErrResultType = errors.New("flux: result type mismatch")
)

// Message is a command or query on its way through a bus.
type Message struct {
	// ID is unique per dispatch. Events a command produces carry it as
	// their causation ID.
	ID string
	// Type names the Go type of Body, for logs.
	Type string
	// Body is the command or query value.
	Body any
	// IdempotencyKey, when set, makes a command run at most once.
	IdempotencyKey string
	// RequestID, CorrelationID and CausationID come from the dispatching
	// context: the correlation ID is kept along the whole chain; the
	// causation ID is what caused this message (an event's ID when an
	// event handler dispatches).
	RequestID, CorrelationID, CausationID string
}

// Handler handles messages; middleware wraps it. One method, like
// net/http.Handler.
type Handler interface {
	Handle(ctx context.Context, m *Message) (any, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m *Message) (any, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, m *Message) (any, error) { return f(ctx, m) }

// Middleware wraps a Handler: func(Handler) Handler, as net/http does.
type Middleware func(next Handler) Handler

// IdempotentCommand is implemented by commands that carry their own
// idempotency key. WithIdempotencyKey sets one from outside.
type IdempotentCommand interface {
	IdempotencyKey() string
}

type idemKey struct{}

// WithIdempotencyKey returns a context whose next dispatched command runs
// at most once per key: a second dispatch with the same key — also
// concurrent, also after a restart — produces no events and returns the
// first outcome.
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idemKey{}, key)
}

// router holds typed handlers by Go type.
type router struct {
	mu       sync.RWMutex
	handlers map[reflect.Type]func(ctx context.Context, body any) (any, error)
}

func (r *router) add(t reflect.Type, kind string, fn func(context.Context, any) (any, error)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.handlers == nil {
		r.handlers = make(map[reflect.Type]func(context.Context, any) (any, error))
	}
	if _, dup := r.handlers[t]; dup {
		return errorf(ErrDuplicateHandler, "%s %v already has a handler", kind, t)
	}
	r.handlers[t] = fn
	return nil
}

func (r *router) get(t reflect.Type) (func(context.Context, any) (any, error), bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	h, ok := r.handlers[t]
	return h, ok
}

func chain(final Handler, mws []Middleware) Handler {
	h := final
	for i := len(mws) - 1; i >= 0; i-- {
		if mws[i] != nil {
			h = mws[i](h)
		}
	}
	return h
}

// CommandBusConfig configures a CommandBus. Repository is required.
type CommandBusConfig struct {
	// Repository loads and saves aggregates; its unit of work saves what a
	// handler touched when it returns. Required.
	Repository *Repository
	// Middleware wraps every dispatch, outermost first. The bus's own
	// layers run in this documented order:
	//
	//  1. message stamping: ID, correlation and causation (always first)
	//  2. Middleware, in the order given (e.g. Logging, RetryOnConflict)
	//  3. idempotency (for commands with a key)
	//  4. unit of work (saves tracked aggregates when the handler returns nil)
	//  5. the handler
	Middleware []Middleware
	// NewID returns message IDs. Default: UUIDv7.
	NewID func() string
	// Clock stamps idempotency records. Default: time.Now.
	Clock func() time.Time
}

// CommandBus dispatches commands to one handler each, inside a unit of
// work. It is safe for concurrent use.
type CommandBus struct {
	cfg    CommandBusConfig
	routes router
	chain  Handler
}

// NewCommandBus returns a command bus.
func NewCommandBus(cfg CommandBusConfig) (*CommandBus, error) {
	if cfg.Repository == nil {
		return nil, errors.New("flux: CommandBusConfig.Repository is nil; the unit of work needs it")
	}
	if cfg.NewID == nil {
		g := new(uuid.Generator)
		cfg.NewID = g.New
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	b := &CommandBus{cfg: cfg}
	final := chain(HandlerFunc(b.route), []Middleware{b.idempotency, b.unitOfWork})
	b.chain = chain(final, cfg.Middleware)
	return b, nil
}

// HandleCommand registers fn as the handler of commands of type C. A
// second handler for C is an error matching ErrDuplicateHandler. Handlers
// never save: aggregates they load (flux.Load) or track (flux.Track,
// Repository.Save) are saved together when they return nil.
func HandleCommand[C any](b *CommandBus, fn func(ctx context.Context, cmd C) error) error {
	return b.routes.add(reflect.TypeFor[C](), "command", func(ctx context.Context, body any) (any, error) {
		return nil, fn(ctx, body.(C))
	})
}

// HandleCommandResult registers a handler that returns a result (an ID,
// say). With an idempotency key the result is stored, as JSON, and
// returned again to duplicates. A result type with fields marked
// `pii:"data"` is stored with those fields encrypted under its subject's
// key (so Forget reaches it); it is refused here when the repository has
// no Protector, or when the protector cannot work with its marks.
func HandleCommandResult[C, R any](b *CommandBus, fn func(ctx context.Context, cmd C) (R, error)) error {
	if rt := reflect.TypeFor[R](); HasPersonalData(rt) {
		prot := b.cfg.Repository.cfg.Protector
		if prot == nil {
			return fmt.Errorf("%w: the result %v of command %v has fields marked pii:\"data\", which idempotency records store; set flux.Config.Protector (package pii) so they are encrypted", ErrPersonalData, rt, reflect.TypeFor[C]())
		}
		if c, ok := prot.(interface{ CheckType(reflect.Type) error }); ok {
			if err := c.CheckType(rt); err != nil {
				return fmt.Errorf("flux: the result %v of command %v: %w", rt, reflect.TypeFor[C](), err)
			}
		}
	}
	return b.routes.add(reflect.TypeFor[C](), "command", func(ctx context.Context, body any) (any, error) {
		return fn(ctx, body.(C))
	})
}

// Dispatch runs cmd's handler through the middleware and the unit of work.
// Errors: ErrUnknownCommand, the handler's error (nothing saved), a
// *ConflictError (nothing saved; see RetryOnConflict), a *PublishError
// (saved, an event handler failed).
func (b *CommandBus) Dispatch(ctx context.Context, cmd any) error {
	_, err := b.dispatch(ctx, cmd)
	return err
}

// DispatchResult dispatches cmd and returns its handler's result as R.
func DispatchResult[R any](ctx context.Context, b *CommandBus, cmd any) (R, error) {
	res, err := b.dispatch(ctx, cmd)
	return resultAs[R](res, err)
}

func (b *CommandBus) dispatch(ctx context.Context, cmd any) (any, error) {
	if cmd == nil {
		return nil, errorf(ErrUnknownCommand, "command is nil")
	}
	if _, ok := b.routes.get(reflect.TypeOf(cmd)); !ok {
		return nil, errorf(ErrUnknownCommand, "no handler for command %T; register one with flux.HandleCommand", cmd)
	}
	m := newMessage(ctx, cmd, b.cfg.NewID)
	if k, ok := cmd.(IdempotentCommand); ok {
		m.IdempotencyKey = k.IdempotencyKey()
	} else if k, ok := ctx.Value(idemKey{}).(string); ok {
		m.IdempotencyKey = k
		ctx = context.WithValue(ctx, idemKey{}, "") // the key is this command's, not nested ones'
	}
	ctx = WithCausationID(WithCorrelationID(ctx, m.CorrelationID), m.ID)
	if obs := b.cfg.Repository.cfg.Observer; obs != nil {
		ctx, end := obs.Start(ctx, Operation{Kind: OpCommand, Name: m.Type, CorrelationID: m.CorrelationID})
		res, err := b.chain.Handle(ctx, m)
		end(Outcome{Err: err, Conflict: errors.Is(err, ErrConcurrencyConflict)})
		return res, err
	}
	return b.chain.Handle(ctx, m)
}

func newMessage(ctx context.Context, body any, newID func() string) *Message {
	md := MetadataFrom(ctx)
	m := &Message{ID: newID(), Type: reflect.TypeOf(body).String(), Body: body,
		RequestID: md.RequestID, CorrelationID: md.CorrelationID, CausationID: md.CausationID}
	if m.CorrelationID == "" {
		m.CorrelationID = m.RequestID
		if m.CorrelationID == "" || m.CorrelationID == DefaultRequestID {
			m.CorrelationID = m.ID
		}
	}
	return m
}

func (b *CommandBus) route(ctx context.Context, m *Message) (any, error) {
	h, ok := b.routes.get(reflect.TypeOf(m.Body))
	if !ok {
		return nil, errorf(ErrUnknownCommand, "no handler for command %s", m.Type)
	}
	return h(ctx, m.Body)
}

// storedResult is a first outcome read back from the idempotency store;
// decode decodes it into a target (decrypting personal fields).
type storedResult struct {
	raw    json.RawMessage
	decode func(raw []byte, target any) error
}

// stored wraps a first outcome read back for key.
func (b *CommandBus) stored(ctx context.Context, key string, raw []byte) storedResult {
	prot := b.cfg.Repository.cfg.Protector
	return storedResult{raw: raw, decode: func(raw []byte, target any) error {
		if prot == nil || !HasPersonalData(reflect.TypeOf(target)) {
			return json.Unmarshal(raw, target)
		}
		_, err := prot.Unprotect(ctx, raw, target, idempotencyScope(key))
		return err
	}}
}

// idempotencyScope binds the ciphertext of a stored result to its key.
func idempotencyScope(key string) string { return "idempotency:" + key }

func resultAs[R any](res any, err error) (R, error) {
	var zero R
	if err != nil && !errors.Is(err, ErrPublish) {
		return zero, err
	}
	switch r := res.(type) {
	case R:
		return r, err
	case storedResult:
		var out R
		if jerr := r.decode(r.raw, &out); jerr != nil {
			return zero, errorf(ErrResultType, "the stored first outcome does not decode into %v: %v", reflect.TypeFor[R](), jerr)
		}
		return out, err
	case nil:
		return zero, err
	default:
		return zero, errorf(ErrResultType, "handler returned %T, caller asked for %v", res, reflect.TypeFor[R]())
	}
}

// idempotency runs a keyed command at most once: a key already recorded
// returns its first outcome, and a concurrent duplicate that commits first
// turns this run's failure into that outcome.
func (b *CommandBus) idempotency(next Handler) Handler {
	return HandlerFunc(func(ctx context.Context, m *Message) (any, error) {
		if m.IdempotencyKey == "" || uowFrom(ctx) != nil {
			return next.Handle(ctx, m)
		}
		store, ok := b.cfg.Repository.store.(IdempotencyStore)
		if !ok {
			return nil, fmt.Errorf("flux: command %s has an idempotency key but store %T does not implement flux.IdempotencyStore", m.Type, b.cfg.Repository.store)
		}
		if rec, found, err := store.LookupIdempotency(ctx, m.IdempotencyKey); err != nil {
			return nil, fmt.Errorf("flux: look up idempotency key %q: %w", m.IdempotencyKey, err)
		} else if found {
			return b.stored(ctx, m.IdempotencyKey, rec.Result), nil
		}
		res, err := next.Handle(ctx, m)
		var dup *IdempotencyError
		switch {
		case errors.As(err, &dup):
			return b.stored(ctx, m.IdempotencyKey, dup.Record.Result), nil
		case errors.Is(err, ErrConcurrencyConflict):
			if rec, found, lerr := store.LookupIdempotency(ctx, m.IdempotencyKey); lerr == nil && found {
				return b.stored(ctx, m.IdempotencyKey, rec.Result), nil
			}
		}
		return res, err
	})
}

// unitOfWork gives the handler a unit of work and saves it when the
// handler returns nil. A nested dispatch joins the outer unit of work.
func (b *CommandBus) unitOfWork(next Handler) Handler {
	return HandlerFunc(func(ctx context.Context, m *Message) (any, error) {
		repo := b.cfg.Repository
		if outer := uowFrom(ctx); outer != nil && outer.repo == repo {
			return next.Handle(ctx, m)
		}
		u := &unitOfWork{repo: repo, byID: make(map[string]Aggregate)}
		res, err := next.Handle(context.WithValue(ctx, uowKey{}, u), m)
		if err != nil {
			return nil, err
		}
		var idem *IdempotencyRecord
		if m.IdempotencyKey != "" {
			raw, err := json.Marshal(res)
			if err != nil {
				return nil, fmt.Errorf("flux: command %s: encode its result for the idempotency record: %w", m.Type, err)
			}
			if res != nil && HasPersonalData(reflect.TypeOf(res)) {
				// The stored first outcome is a copy of personal data: it
				// is encrypted under its subject's key like the events, so
				// it is forgotten with them.
				prot := repo.cfg.Protector
				if prot == nil {
					return nil, fmt.Errorf("%w: command %s: its result %T has fields marked pii:\"data\" but the repository has no Protector to encrypt the idempotency record; set flux.Config.Protector", ErrPersonalData, m.Type, res)
				}
				if raw, err = prot.Protect(ctx, res, raw, idempotencyScope(m.IdempotencyKey)); err != nil {
					return nil, fmt.Errorf("flux: command %s: encrypt its result for the idempotency record: %w", m.Type, err)
				}
			}
			idem = &IdempotencyRecord{Key: m.IdempotencyKey, Result: raw, CreatedAt: b.cfg.Clock()}
		}
		return res, repo.save(withoutUnitOfWork(ctx), u.aggregates(), idem)
	})
}

// QueryBusConfig configures a QueryBus. Every field is optional.
type QueryBusConfig struct {
	// Middleware wraps every dispatch, outermost first (e.g. Logging).
	// Default: none.
	Middleware []Middleware
	// NewID returns message IDs. Default: UUIDv7.
	NewID func() string
	// Observer is told of every query (see Observer). Default: none.
	Observer Observer
}

// QueryBus dispatches queries to one handler each, through middleware. It
// is safe for concurrent use.
type QueryBus struct {
	routes router
	chain  Handler
	newID  func() string
	obs    Observer
}

// NewQueryBus returns a query bus configured by cfg; like NewCommandBus it
// takes a config struct, whose zero value is ready to use.
func NewQueryBus(cfg QueryBusConfig) *QueryBus {
	b := &QueryBus{newID: cfg.NewID, obs: cfg.Observer}
	if b.newID == nil {
		g := new(uuid.Generator)
		b.newID = g.New
	}
	b.chain = chain(HandlerFunc(b.route), cfg.Middleware)
	return b
}

// HandleQuery registers fn as the handler of queries of type Q. A second
// handler for Q is an error matching ErrDuplicateHandler.
func HandleQuery[Q, R any](b *QueryBus, fn func(ctx context.Context, q Q) (R, error)) error {
	return b.routes.add(reflect.TypeFor[Q](), "query", func(ctx context.Context, body any) (any, error) {
		return fn(ctx, body.(Q))
	})
}

// Ask runs the handler of q and returns its result as R.
func Ask[R any](ctx context.Context, b *QueryBus, q any) (R, error) {
	var zero R
	if q == nil {
		return zero, errorf(ErrUnknownQuery, "query is nil")
	}
	if _, ok := b.routes.get(reflect.TypeOf(q)); !ok {
		return zero, errorf(ErrUnknownQuery, "no handler for query %T; register one with flux.HandleQuery", q)
	}
	m := newMessage(ctx, q, b.newID)
	ctx = WithCorrelationID(ctx, m.CorrelationID)
	ctx, end := observe(ctx, b.obs, Operation{Kind: OpQuery, Name: m.Type, CorrelationID: m.CorrelationID})
	res, err := b.chain.Handle(ctx, m)
	end(Outcome{Err: err})
	return resultAs[R](res, err)
}

func (b *QueryBus) route(ctx context.Context, m *Message) (any, error) {
	h, ok := b.routes.get(reflect.TypeOf(m.Body))
	if !ok {
		return nil, errorf(ErrUnknownQuery, "no handler for query %s", m.Type)
	}
	return h(ctx, m.Body)
}
