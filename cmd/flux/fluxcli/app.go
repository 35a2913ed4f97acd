package fluxcli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
)

// application is what the commands know of the application: its registry
// (empty without Config.Registry), repository, protector and projections.
type application struct {
	reg *flux.Registry
	// registered is false for the stock binary: payloads show as stored.
	registered bool
	repo       *flux.Repository
	protector  *pii.Protector // nil without a secret
	runner     *projection.Runner
	// projections are the built projections, by name, once
	// addProjections ran; names are the configured names.
	projections map[string]projection.Projection
	names       []string
}

// errNoRegistry says that a command needs the application's types.
func errNoRegistry(what string) error {
	return fmt.Errorf("%s need the application's registry, which this flux binary does not have; build the application's own flux with package fluxcli (see docs/cli.md), or use 'flux events', which shows payloads as stored", what)
}

// openApp builds the repository over b. With KEY_MANAGEMENT_SECRET (or
// Config.Protector) the personal data decrypts; without, it reads as
// hidden. It writes nothing: projections are built by addProjections.
func (m *Main) openApp(b *Backend) (*application, error) {
	a := &application{}
	var err error
	if m.Config.Registry != nil {
		if a.reg, err = m.Config.Registry(); err != nil {
			return nil, fmt.Errorf("the application's registry: %w", err)
		}
		a.registered = a.reg != nil
	}
	if a.reg == nil {
		if a.reg, err = flux.NewRegistry(); err != nil {
			return nil, err
		}
	}
	var prot flux.DataProtector = hiddenData{}
	switch {
	case m.Config.Protector != nil:
		p, err := m.Config.Protector(b.store)
		if err != nil {
			return nil, fmt.Errorf("the application's protector: %w", err)
		}
		if p != nil {
			a.protector, prot = p, p
		}
	case m.Getenv(pii.SecretEnv) != "":
		p, err := pii.New(pii.Config{Keys: b.store, Secret: []byte(m.Getenv(pii.SecretEnv)), Replacement: "[forgotten]"})
		if err != nil {
			return nil, err
		}
		a.protector, prot = p, p
	}
	a.repo, err = flux.NewRepository(flux.Config{Store: b.store, Registry: a.reg, Protector: prot, Clock: m.Clock, Observer: m.observer})
	if err != nil {
		return nil, err
	}
	a.runner, err = projection.NewRunner(projection.RunnerConfig{Repository: a.repo, Clock: m.Clock})
	if err != nil {
		return nil, err
	}
	for _, p := range m.Config.Projections {
		a.names = append(a.names, p.Name)
	}
	return a, nil
}

// addProjections builds the application's projections (which may create
// their read models) and adds them to the runner. Only commands that
// rebuild, reset or run projections call it.
func (a *application) addProjections(ctx context.Context, m *Main, b *Backend) error {
	a.projections = map[string]projection.Projection{}
	for _, cp := range m.Config.Projections {
		if cp.New == nil {
			return fmt.Errorf("projection %q has no New function in the fluxcli.Config", cp.Name)
		}
		p, err := cp.New(ctx, b)
		if err != nil {
			return fmt.Errorf("build projection %s: %w", cp.Name, err)
		}
		if p.Name() != cp.Name {
			return fmt.Errorf("projection configured as %q is named %q; use one name", cp.Name, p.Name())
		}
		if err := a.runner.Add(p); err != nil {
			return err
		}
		a.projections[cp.Name] = p
	}
	return nil
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
