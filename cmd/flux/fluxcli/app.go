package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/examples/budget"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
)

// application is the registered application the commands understand: the
// PHP library's example domain (users, budget envelopes, registries).
type application struct {
	reg       *flux.Registry
	repo      *flux.Repository
	protector *pii.Protector // nil without KEY_MANAGEMENT_SECRET
	runner    *projection.Runner
	balances  budget.BalanceStore
}

// balancesProjection is the application's projection: envelope balances.
const balancesProjection = "envelope-balances"

// openApp builds the repository over b. With KEY_MANAGEMENT_SECRET the
// personal data decrypts; without it, it reads as hidden.
func (m *Main) openApp(b *backend) (*application, error) {
	reg, err := budget.NewRegistry()
	if err != nil {
		return nil, err
	}
	a := &application{reg: reg}
	var prot flux.DataProtector = hiddenData{}
	if secret := m.Getenv(pii.SecretEnv); secret != "" {
		p, err := pii.New(pii.Config{Keys: b.store, Secret: []byte(secret), Replacement: "[forgotten]"})
		if err != nil {
			return nil, err
		}
		a.protector, prot = p, p
	}
	a.repo, err = flux.NewRepository(flux.Config{Store: b.store, Registry: reg, Protector: prot, Clock: m.Clock, Observer: m.observer})
	if err != nil {
		return nil, err
	}
	a.runner, err = projection.NewRunner(projection.RunnerConfig{Repository: a.repo, Clock: m.Clock})
	if err != nil {
		return nil, err
	}
	if a.balances, err = b.balanceStore(); err != nil {
		return nil, err
	}
	if err := a.runner.Add(newBalancesProjection(b.store, a.balances, m.Clock)); err != nil {
		return nil, err
	}
	return a, nil
}

// hiddenData reads stored personal data as hidden: every encrypted value
// decodes as its zero value and is reported as unreadable. It cannot write.
type hiddenData struct{}

func (hiddenData) Protect(context.Context, any, []byte, string) ([]byte, error) {
	return nil, fmt.Errorf("%w: set %s to write personal data", flux.ErrPersonalData, pii.SecretEnv)
}

func (hiddenData) Unprotect(_ context.Context, data []byte, target any, _ string) ([]string, error) {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	var hidden []string
	v = hideEnvelopes(v, "", &hidden)
	clean, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return hidden, json.Unmarshal(clean, target)
}

func hideEnvelopes(v any, path string, hidden *[]string) any {
	switch x := v.(type) {
	case string:
		if len(x) > len(pii.EnvelopePrefix) && x[:len(pii.EnvelopePrefix)] == pii.EnvelopePrefix {
			*hidden = append(*hidden, path)
			return nil
		}
	case map[string]any:
		for k, e := range x {
			p := k
			if path != "" {
				p = path + "." + k
			}
			x[k] = hideEnvelopes(e, p, hidden)
		}
	case []any:
		for i, e := range x {
			x[i] = hideEnvelopes(e, fmt.Sprintf("%s[%d]", path, i), hidden)
		}
	}
	return v
}
