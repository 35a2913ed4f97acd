package budget

import (
	"errors"
	"fmt"
	"strings"

	"github.com/fluxcapacitor/flux"
)

// Errors of budget envelopes.
var (
	ErrInvalidEnvelope    = errors.New("budget: invalid envelope")
	ErrInsufficientFunds  = errors.New("budget: insufficient funds in envelope")
	ErrTargetExceeded     = errors.New("budget: credit would exceed the envelope's target")
	ErrNotYourEnvelope    = errors.New("budget: envelope belongs to another user")
	ErrCurrencyMismatch   = errors.New("budget: envelopes have different currencies")
	ErrEnvelopeNameInUse  = errors.New("budget: envelope name already in use")
	ErrEmailAlreadyInUse  = errors.New("budget: e-mail address already in use")
	ErrSameEnvelope       = errors.New("budget: cannot transfer to the same envelope")
	ErrAmountNotPositive  = errors.New("budget: amount must be positive")
	ErrEnvelopeNotCreated = errors.New("budget: envelope does not exist")
)

// BudgetEnvelopeAdded creates an envelope: money set aside for a purpose,
// up to a target. Amounts are in minor units (cents).
type BudgetEnvelopeAdded struct {
	EnvelopeID     string `json:"envelopeId"`
	UserID         string `json:"userId"`
	Name           string `json:"name"`
	TargetedAmount int64  `json:"targetedAmount"`
	Currency       string `json:"currency"`
}

// BudgetEnvelopeRenamed records a new name.
type BudgetEnvelopeRenamed struct {
	Name string `json:"name"`
}

// BudgetEnvelopeCredited records money put in; TransferID links the two
// sides of a transfer.
type BudgetEnvelopeCredited struct {
	Amount     int64  `json:"amount"`
	TransferID string `json:"transferId,omitempty"`
}

// BudgetEnvelopeDebited records money taken out.
type BudgetEnvelopeDebited struct {
	Amount     int64  `json:"amount"`
	TransferID string `json:"transferId,omitempty"`
}

// BudgetEnvelope is money set aside by one user for one purpose.
type BudgetEnvelope struct {
	flux.Root
	UserID         string `json:"userId"`
	Name           string `json:"name"`
	TargetedAmount int64  `json:"targetedAmount"`
	CurrentAmount  int64  `json:"currentAmount"`
	Currency       string `json:"currency"`
}

// AddEnvelope creates an envelope.
func AddEnvelope(id, userID, name string, target int64, currency string) (*BudgetEnvelope, error) {
	var problems []string
	if id == "" || userID == "" {
		problems = append(problems, "id and user are required")
	}
	if strings.TrimSpace(name) == "" || len(name) > 64 {
		problems = append(problems, "name must have 1 to 64 characters")
	}
	if target <= 0 {
		problems = append(problems, "target must be positive")
	}
	if len(currency) != 3 {
		problems = append(problems, "currency must be an ISO 4217 code")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalidEnvelope, strings.Join(problems, "; "))
	}
	e := new(BudgetEnvelope)
	e.SetID(id)
	flux.Raise(e, BudgetEnvelopeAdded{EnvelopeID: id, UserID: userID, Name: name, TargetedAmount: target, Currency: strings.ToUpper(currency)})
	return e, nil
}

// Rename gives the envelope a new name.
func (e *BudgetEnvelope) Rename(name string) error {
	if strings.TrimSpace(name) == "" || len(name) > 64 {
		return fmt.Errorf("%w: name must have 1 to 64 characters", ErrInvalidEnvelope)
	}
	if name != e.Name {
		flux.Raise(e, BudgetEnvelopeRenamed{Name: name})
	}
	return nil
}

// Credit puts money in, up to the target.
func (e *BudgetEnvelope) Credit(amount int64, transferID string) error {
	if amount <= 0 {
		return ErrAmountNotPositive
	}
	if e.CurrentAmount+amount > e.TargetedAmount {
		return fmt.Errorf("%w: %d + %d > %d %s", ErrTargetExceeded, e.CurrentAmount, amount, e.TargetedAmount, e.Currency)
	}
	flux.Raise(e, BudgetEnvelopeCredited{Amount: amount, TransferID: transferID})
	return nil
}

// Debit takes money out.
func (e *BudgetEnvelope) Debit(amount int64, transferID string) error {
	if amount <= 0 {
		return ErrAmountNotPositive
	}
	if amount > e.CurrentAmount {
		return fmt.Errorf("%w: %d available, %d asked", ErrInsufficientFunds, e.CurrentAmount, amount)
	}
	flux.Raise(e, BudgetEnvelopeDebited{Amount: amount, TransferID: transferID})
	return nil
}

// Apply implements flux.Aggregate.
func (e *BudgetEnvelope) Apply(event any) {
	switch ev := event.(type) {
	case BudgetEnvelopeAdded:
		e.UserID, e.Name, e.TargetedAmount, e.Currency = ev.UserID, ev.Name, ev.TargetedAmount, ev.Currency
	case BudgetEnvelopeRenamed:
		e.Name = ev.Name
	case BudgetEnvelopeCredited:
		e.CurrentAmount += ev.Amount
	case BudgetEnvelopeDebited:
		e.CurrentAmount -= ev.Amount
	}
}

// SnapshotState implements flux.Snapshotter: envelopes see many credits
// and debits.
func (e *BudgetEnvelope) SnapshotState() any { return e }

// RestoreSnapshot implements flux.Snapshotter.
func (e *BudgetEnvelope) RestoreSnapshot(decode func(any) error) error { return decode(e) }
