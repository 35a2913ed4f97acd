// Package fluxcli is the flux command as a library: an application builds
// its own flux binary, which knows its event types, aggregates, personal
// data and projections, in a few lines:
//
//	package main
//
//	import (
//		"github.com/fluxcapacitor/flux/cmd/flux/fluxcli"
//		"example.com/shop/domain"
//	)
//
//	func main() {
//		fluxcli.Run(fluxcli.Config{
//			Registry:    domain.NewRegistry,
//			Projections: []fluxcli.Projection{{Name: "orders", New: domain.OrdersProjection}},
//		})
//	}
//
// Its state, events, trace, projections and forget commands then decode
// the application's events and rebuild its projections. The stock flux
// command (github.com/fluxcapacitor/flux/cmd/flux) is the zero Config plus
// the demo: it reads any store without a registry, showing payloads as
// stored.
//
// Read-only commands never write: SQLite files are opened read-only, no
// table is created, no read model is built; a store without the event
// store's schema is reported with "run 'flux migrate'". See docs/cli.md.
package fluxcli

import (
	"context"
	"database/sql"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
)

// Config is the application a flux binary serves. The zero Config reads
// any store without knowing its types.
type Config struct {
	// Registry returns the application's registry (event types, upcasters,
	// aggregates). Without it, payloads are shown as stored and the state
	// command is unavailable.
	Registry func() (*flux.Registry, error)
	// Protector returns the application's personal-data protector over the
	// store's data keys. Default: with KEY_MANAGEMENT_SECRET set, a
	// pii.Protector with that secret that reads forgotten data as
	// "[forgotten]"; without it, personal data reads as "[encrypted]".
	// It may return nil to hide personal data.
	Protector func(keys pii.KeyStore) (*pii.Protector, error)
	// Projections are the application's projections, which `flux
	// projections` reports, rebuilds, resets and runs.
	Projections []Projection
	// Commands adds commands to the built-in ones, or replaces them, by
	// name (for instance "ui", or the stock binary's "demo").
	Commands map[string]Command
}

// Projection is one of the application's projections.
type Projection struct {
	// Name is the projection's (and its checkpoint's) name.
	Name string
	// New builds the projection over the opened store, with its read
	// model. Only the commands that rebuild, reset or run projections call
	// it, so it may create the read model's tables. A projection that
	// implements projection.Resetter is reset by `flux projections reset`;
	// one that implements projection.Swapper can be rebuilt with --swap.
	New func(ctx context.Context, b *Backend) (projection.Projection, error)
}

// Command is one flux command.
type Command struct {
	// Summary is the one line `flux help` shows.
	Summary string
	// Run runs the command with its arguments (after the command name).
	// Returned errors are printed as "flux NAME: error".
	Run func(ctx context.Context, m *Main, args []string) error
}

// Run runs the flux command line of this process (os.Args) with cfg and
// exits with its exit code: 0 on success, 1 on failure, 2 on a usage
// mistake. Interrupts (Ctrl-C, SIGTERM) cancel the command.
func Run(cfg Config) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	m := &Main{Config: cfg, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	code := m.Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// Kind is the backend: "sqlite", "postgres" or "mysql".
func (b *Backend) Kind() string { return b.kind }

// Where names the store for messages: a file, or a server and database
// (never a password).
func (b *Backend) Where() string { return b.where }

// Store is the opened event store.
func (b *Backend) Store() Store { return b.store }

// DB is a database/sql pool on the store's database, for read models.
// On SQLite opened for a read-only command it is read-only.
func (b *Backend) DB() *sql.DB { return b.db }

// Schema is the PostgreSQL schema of the store ("" on other backends):
// read-model tables go there.
func (b *Backend) Schema() string { return b.schema }

// Now is the command's clock.
func (b *Backend) Now() time.Time { return b.clock() }
