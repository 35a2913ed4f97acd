package budget

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
)

// Commands. Handlers never save: the command bus's unit of work saves
// every aggregate a handler loads or tracks, atomically.
type (
	// SignUp registers a user; the e-mail address must be unused.
	SignUp struct {
		UserID, Email, Firstname, Lastname, Language string
		Consent                                      bool
	}
	// ChangeFirstname renames a user.
	ChangeFirstname struct{ UserID, Firstname string }
	// ChangeLastname changes a user's last name.
	ChangeLastname struct{ UserID, Lastname string }
	// DeleteUser closes an account and frees its e-mail address.
	DeleteUser struct{ UserID string }
	// AddBudgetEnvelope creates an envelope; its name must be unused among
	// the user's envelopes.
	AddBudgetEnvelope struct {
		EnvelopeID, UserID, Name string
		TargetedAmount           int64
		Currency                 string
	}
	// RenameBudgetEnvelope renames an envelope, releasing the old name.
	RenameBudgetEnvelope struct{ EnvelopeID, UserID, Name string }
	// CreditBudgetEnvelope puts money in an envelope.
	CreditBudgetEnvelope struct {
		EnvelopeID, UserID string
		Amount             int64
	}
	// DebitBudgetEnvelope takes money out of an envelope.
	DebitBudgetEnvelope struct {
		EnvelopeID, UserID string
		Amount             int64
	}
	// TransferBetweenEnvelopes moves money from one envelope to another of
	// the same user, as one multi-aggregate transaction.
	TransferBetweenEnvelopes struct {
		TransferID, FromEnvelopeID, ToEnvelopeID, UserID string
		Amount                                           int64
	}
)

// Queries and their results.
type (
	// GetUser returns a UserView.
	GetUser struct{ UserID string }
	// GetEnvelope returns an EnvelopeView.
	GetEnvelope struct{ EnvelopeID string }
	// UserView is a user as the application shows it.
	UserView struct {
		UserID, Email, Firstname, Lastname string
		Deleted, Forgotten                 bool
		Version                            int64
	}
	// EnvelopeView is an envelope as the application shows it.
	EnvelopeView struct {
		EnvelopeID, UserID, Name, Currency string
		TargetedAmount, CurrentAmount      int64
		Version                            int64
	}
)

// Config wires an App.
type Config struct {
	// Store holds events, snapshots and data keys (it must implement
	// pii.KeyStore: memstore, sqlitestore, pgstore, mysqlstore do).
	Store flux.EventStore
	// Secret is the key-encryption secret (KEY_MANAGEMENT_SECRET).
	Secret []byte
	// Logger logs every command; personal data is redacted. Default:
	// discard.
	Logger *slog.Logger
	// Clock stamps events. Default time.Now.
	Clock func() time.Time
	// NewID returns event and message IDs (UUIDs). Default: UUIDv7.
	NewID func() string
	// Retry configures retries after concurrency conflicts.
	Retry flux.RetryOptions
}

// App is the budget application: repository, buses and registries.
type App struct {
	Repo      *flux.Repository
	Commands  *flux.CommandBus
	Queries   *flux.QueryBus
	Events    *flux.EventBus
	Protector *pii.Protector
	Registry  *flux.Registry
	emails    flux.Unique
}

// NewApp wires the application over cfg.Store.
func NewApp(cfg Config) (*App, error) {
	keys, ok := cfg.Store.(pii.KeyStore)
	if !ok {
		return nil, fmt.Errorf("budget: store %T does not keep data keys (pii.KeyStore)", cfg.Store)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	reg, err := NewRegistry()
	if err != nil {
		return nil, err
	}
	prot, err := pii.New(pii.Config{Keys: keys, Secret: cfg.Secret, Logger: cfg.Logger, Clock: cfg.Clock})
	if err != nil {
		return nil, err
	}
	a := &App{Events: flux.NewEventBus(), Protector: prot, Registry: reg}
	a.Repo, err = flux.NewRepository(flux.Config{Store: cfg.Store, Registry: reg, Protector: prot,
		Publisher: a.Events, Clock: cfg.Clock, NewID: cfg.NewID, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	a.Commands, err = flux.NewCommandBus(flux.CommandBusConfig{
		Repository: a.Repo,
		Middleware: []flux.Middleware{flux.Logging(cfg.Logger), flux.RetryOnConflict(cfg.Retry)},
		Clock:      cfg.Clock,
		NewID:      cfg.NewID,
	})
	if err != nil {
		return nil, err
	}
	a.Queries = flux.NewQueryBus(flux.QueryBusConfig{Middleware: []flux.Middleware{flux.Logging(cfg.Logger)}})
	// E-mail addresses are personal: the registry's stream IDs are HMACs.
	mac := hmac.New(sha256.New, cfg.Secret)
	mac.Write([]byte("budget/email-registry"))
	a.emails = flux.Unique{Scope: "user-email", CaseInsensitive: true, Key: mac.Sum(nil)}
	if err := a.register(); err != nil {
		return nil, err
	}
	return a, nil
}

// envelopeNames is the per-user registry of envelope names.
func envelopeNames(userID string) flux.Unique {
	return flux.Unique{Scope: "envelope-name/" + userID, CaseInsensitive: true}
}

func (a *App) register() error {
	repo := a.Repo
	return errors.Join(
		flux.HandleCommand(a.Commands, func(ctx context.Context, c SignUp) error {
			if err := a.emails.Claim(ctx, repo, c.Email, c.UserID); err != nil {
				return inUse(err, ErrEmailAlreadyInUse)
			}
			u, err := RegisterUser(c.UserID, c.Email, c.Firstname, c.Lastname, c.Language, c.Consent)
			if err != nil {
				return err
			}
			return flux.Track(ctx, u)
		}),
		flux.HandleCommand(a.Commands, func(ctx context.Context, c ChangeFirstname) error {
			u, err := flux.Load[*User](ctx, repo, c.UserID)
			if err != nil {
				return err
			}
			return u.ChangeFirstname(c.Firstname)
		}),
		flux.HandleCommand(a.Commands, func(ctx context.Context, c ChangeLastname) error {
			u, err := flux.Load[*User](ctx, repo, c.UserID)
			if err != nil {
				return err
			}
			return u.ChangeLastname(c.Lastname)
		}),
		flux.HandleCommand(a.Commands, func(ctx context.Context, c DeleteUser) error {
			u, err := flux.Load[*User](ctx, repo, c.UserID)
			if err != nil {
				return err
			}
			if err := u.Delete(); err != nil {
				return err
			}
			return a.emails.Release(ctx, repo, u.Email, u.ID())
		}),
		flux.HandleCommand(a.Commands, func(ctx context.Context, c AddBudgetEnvelope) error {
			u, err := flux.Load[*User](ctx, repo, c.UserID)
			if err != nil {
				return err
			}
			if u.Deleted {
				return ErrUserDeleted
			}
			if err := envelopeNames(c.UserID).Claim(ctx, repo, c.Name, c.EnvelopeID); err != nil {
				return inUse(err, ErrEnvelopeNameInUse)
			}
			e, err := AddEnvelope(c.EnvelopeID, c.UserID, c.Name, c.TargetedAmount, c.Currency)
			if err != nil {
				return err
			}
			return flux.Track(ctx, e)
		}),
		flux.HandleCommand(a.Commands, func(ctx context.Context, c RenameBudgetEnvelope) error {
			e, err := a.ownEnvelope(ctx, c.EnvelopeID, c.UserID)
			if err != nil {
				return err
			}
			old := e.Name
			if err := e.Rename(c.Name); err != nil {
				return err
			}
			return inUse(envelopeNames(c.UserID).Transfer(ctx, repo, old, c.Name, e.ID()), ErrEnvelopeNameInUse)
		}),
		flux.HandleCommand(a.Commands, func(ctx context.Context, c CreditBudgetEnvelope) error {
			e, err := a.ownEnvelope(ctx, c.EnvelopeID, c.UserID)
			if err != nil {
				return err
			}
			return e.Credit(c.Amount, "")
		}),
		flux.HandleCommand(a.Commands, func(ctx context.Context, c DebitBudgetEnvelope) error {
			e, err := a.ownEnvelope(ctx, c.EnvelopeID, c.UserID)
			if err != nil {
				return err
			}
			return e.Debit(c.Amount, "")
		}),
		flux.HandleCommand(a.Commands, func(ctx context.Context, c TransferBetweenEnvelopes) error {
			if c.FromEnvelopeID == c.ToEnvelopeID {
				return ErrSameEnvelope
			}
			from, err := a.ownEnvelope(ctx, c.FromEnvelopeID, c.UserID)
			if err != nil {
				return err
			}
			to, err := a.ownEnvelope(ctx, c.ToEnvelopeID, c.UserID)
			if err != nil {
				return err
			}
			if from.Currency != to.Currency {
				return fmt.Errorf("%w: %s and %s", ErrCurrencyMismatch, from.Currency, to.Currency)
			}
			if err := from.Debit(c.Amount, c.TransferID); err != nil {
				return err
			}
			return to.Credit(c.Amount, c.TransferID)
		}),
		flux.HandleQuery(a.Queries, func(ctx context.Context, q GetUser) (UserView, error) {
			u, err := flux.Load[*User](ctx, repo, q.UserID)
			if err != nil {
				return UserView{}, err
			}
			return UserView{UserID: u.ID(), Email: u.Email, Firstname: u.Firstname, Lastname: u.Lastname,
				Deleted: u.Deleted, Forgotten: u.LoadInfo().Forgotten, Version: u.Version()}, nil
		}),
		flux.HandleQuery(a.Queries, func(ctx context.Context, q GetEnvelope) (EnvelopeView, error) {
			e, err := flux.Load[*BudgetEnvelope](ctx, repo, q.EnvelopeID)
			if err != nil {
				return EnvelopeView{}, err
			}
			return viewOf(e), nil
		}),
	)
}

func viewOf(e *BudgetEnvelope) EnvelopeView {
	return EnvelopeView{EnvelopeID: e.ID(), UserID: e.UserID, Name: e.Name, Currency: e.Currency,
		TargetedAmount: e.TargetedAmount, CurrentAmount: e.CurrentAmount, Version: e.Version()}
}

func (a *App) ownEnvelope(ctx context.Context, id, userID string) (*BudgetEnvelope, error) {
	e, err := flux.Load[*BudgetEnvelope](ctx, a.Repo, id)
	if errors.Is(err, flux.ErrAggregateNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrEnvelopeNotCreated, id)
	}
	if err != nil {
		return nil, err
	}
	if e.UserID != userID {
		return nil, fmt.Errorf("%w: %s", ErrNotYourEnvelope, id)
	}
	return e, nil
}

// inUse turns a taken unique value into the domain's error.
func inUse(err, domain error) error {
	if errors.Is(err, flux.ErrValueTaken) {
		return fmt.Errorf("%w: %w", domain, err)
	}
	return err
}
