package budget

import (
	"context"
	"slices"
	"sort"
	"sync"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/projection"
)

// BalanceStore keeps the envelope-balances read model. Put is idempotent:
// it keeps a view only when its version is newer than the stored one, so
// the at-least-once projection below applies each event's effect once.
type BalanceStore interface {
	Get(ctx context.Context, envelopeID string) (EnvelopeView, bool, error)
	Put(ctx context.Context, v EnvelopeView) error
	List(ctx context.Context, userID string) ([]EnvelopeView, error)
	Reset(ctx context.Context) error
}

// BalancesProjection keeps a BalanceStore up to date from the global log.
func BalancesProjection(name string, store BalanceStore) *projection.Func {
	return projection.New(name, func(ctx context.Context, e flux.Envelope) error {
		v, _, err := store.Get(ctx, e.StreamID)
		if err != nil {
			return err
		}
		if e.StreamVersion <= v.Version {
			return nil // seen already (at-least-once delivery)
		}
		switch ev := e.Event.(type) {
		case BudgetEnvelopeAdded:
			v = EnvelopeView{EnvelopeID: e.StreamID, UserID: ev.UserID, Name: ev.Name, Currency: ev.Currency, TargetedAmount: ev.TargetedAmount}
		case BudgetEnvelopeRenamed:
			v.Name = ev.Name
		case BudgetEnvelopeCredited:
			v.CurrentAmount += ev.Amount
		case BudgetEnvelopeDebited:
			v.CurrentAmount -= ev.Amount
		}
		v.Version = e.StreamVersion
		return store.Put(ctx, v)
	}, projection.AggregateTypes("BudgetEnvelope"), projection.OnReset(store.Reset))
}

// MemoryBalances is a BalanceStore in memory, for tests and examples.
type MemoryBalances struct {
	mu    sync.Mutex
	views map[string]EnvelopeView
}

// NewMemoryBalances returns an empty read model.
func NewMemoryBalances() *MemoryBalances { return &MemoryBalances{views: map[string]EnvelopeView{}} }

// Get implements BalanceStore.
func (m *MemoryBalances) Get(_ context.Context, id string) (EnvelopeView, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.views[id]
	return v, ok, nil
}

// Put implements BalanceStore.
func (m *MemoryBalances) Put(_ context.Context, v EnvelopeView) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.views[v.EnvelopeID]; !ok || v.Version > old.Version {
		m.views[v.EnvelopeID] = v
	}
	return nil
}

// List implements BalanceStore: a user's envelopes by name.
func (m *MemoryBalances) List(_ context.Context, userID string) ([]EnvelopeView, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []EnvelopeView
	for _, v := range m.views {
		if userID == "" || v.UserID == userID {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return slices.Clip(out), nil
}

// Reset implements BalanceStore.
func (m *MemoryBalances) Reset(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.views = map[string]EnvelopeView{}
	return nil
}
