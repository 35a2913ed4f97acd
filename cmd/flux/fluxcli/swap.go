package fluxcli

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/fluxcapacitor/flux/examples/budget"
	"github.com/fluxcapacitor/flux/projection"
	"github.com/jackc/pgx/v5"
)

// A rebuild with --swap fills a fresh table, named after the live one with
// freshSuffix (budget_envelope_balances_rebuild), under a checkpoint of its
// own, named after the projection with shadowSuffix
// (envelope-balances-rebuild), then swaps the table in. On MySQL the live
// table is renamed with oldSuffix on its way out, then dropped.
const (
	freshSuffix  = "_rebuild"
	oldSuffix    = "_old"
	shadowSuffix = "-rebuild"
)

// swappableBalances is the envelope-balances projection over a SQL read
// model. It implements projection.Swapper, so Runner.RebuildSwap (flux
// projections rebuild --swap) can fill a fresh table while readers keep
// the live one, and swap it in when it is complete.
//
// Like a rebuild in place, a swap rebuild expects no runner of the
// projection meanwhile (flux projections run): the projection is
// at-least-once, so a running one would go on writing the old table up to
// the swap and then overwrite the checkpoint the swap set with its own.
type swappableBalances struct {
	*projection.Func
	live  *sqlBalances
	cps   Store // the event store: checkpoints and ProjectTx
	clock func() time.Time
}

var (
	_ projection.Swapper  = (*swappableBalances)(nil)
	_ projection.Handler  = (*swappableBalances)(nil)
	_ projection.Resetter = (*swappableBalances)(nil)
	_ budget.BalanceStore = (*sqlBalances)(nil)
)

// newBalancesProjection returns the application's projection, named
// balancesProjection, over the read model balances of the store cps. Over a
// SQL read model it is a projection.Swapper.
func newBalancesProjection(cps Store, balances budget.BalanceStore, clock func() time.Time) projection.Projection {
	p := budget.BalancesProjection(balancesProjection, balances)
	live, ok := balances.(*sqlBalances)
	if !ok {
		return p
	}
	return &swappableBalances{Func: p, live: live, cps: cps, clock: clock}
}

// fresh is the read model a swap rebuild fills.
func (p *swappableBalances) fresh() *sqlBalances { return p.live.withTable(p.live.name + freshSuffix) }

// Shadow implements projection.Swapper: it drops the fresh table left by
// an interrupted rebuild, if any, creates it empty and returns the
// projection that fills it, under the checkpoint name
// envelope-balances-rebuild (which RebuildSwap sets to where it starts).
func (p *swappableBalances) Shadow(ctx context.Context) (projection.Projection, error) {
	fresh := p.fresh()
	if err := fresh.drop(ctx); err != nil {
		return nil, err
	}
	if err := fresh.create(ctx, "CREATE TABLE "); err != nil {
		return nil, err
	}
	return budget.BalancesProjection(p.Name()+shadowSuffix, fresh), nil
}

// Swap implements projection.Swapper: it replaces the live table by the
// fresh one and sets the live checkpoint to the fresh one's, shadow. On
// SQLite and PostgreSQL both happen in one transaction (the store's
// ProjectTx, which fails with projection.ErrCheckpointMoved, changing
// nothing, if a runner moved the live checkpoint meanwhile); on MySQL,
// where DDL commits, by one atomic RENAME TABLE and then the checkpoint.
// Readers see the old table or the new one, complete. The fresh table's
// checkpoint is deleted afterwards.
func (p *swappableBalances) Swap(ctx context.Context, shadow projection.Checkpoint) error {
	var err error
	if p.live.dialect == "mysql" {
		err = p.swapByRename(ctx, shadow)
	} else {
		err = p.swapInTx(ctx, shadow)
	}
	if err != nil {
		return err
	}
	if err := p.cps.DeleteCheckpoint(context.WithoutCancel(ctx), shadow.Name); err != nil {
		return fmt.Errorf("swapped in, but the checkpoint %q of the copy remains: %w", shadow.Name, err)
	}
	return nil
}

// swapInTx drops the live table, renames the fresh one over it and moves
// the live checkpoint in one transaction of the store (SQLite and
// PostgreSQL have transactional DDL).
func (p *swappableBalances) swapInTx(ctx context.Context, shadow projection.Checkpoint) error {
	live, err := p.cps.LoadCheckpoint(ctx, p.Name())
	if err != nil {
		return err
	}
	fresh := p.fresh()
	stmts := []string{
		`DROP TABLE IF EXISTS ` + p.live.table(),
		`ALTER TABLE ` + fresh.table() + ` RENAME TO ` + p.live.name,
	}
	if p.live.dialect == "postgres" {
		// The primary key's index keeps the name it was created with:
		// give it the live table's again (index names are unique in a
		// schema, so the fresh table's next one would get another).
		stmts = append(stmts, `ALTER TABLE `+p.live.table()+` RENAME CONSTRAINT `+fresh.name+`_pkey TO `+p.live.name+`_pkey`)
	}
	cp := projection.Checkpoint{Name: p.Name(), Position: shadow.Position, UpdatedAt: p.clock()}
	switch s := p.cps.(type) {
	case projection.TxStore[pgx.Tx]:
		return s.ProjectTx(ctx, live.Position, cp, func(ctx context.Context, tx pgx.Tx) error {
			for _, stmt := range stmts {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return err
				}
			}
			return nil
		})
	case projection.TxStore[*sql.Tx]:
		return s.ProjectTx(ctx, live.Position, cp, func(ctx context.Context, tx *sql.Tx) error {
			for _, stmt := range stmts {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return fmt.Errorf("store %T cannot move a checkpoint in a transaction", p.cps)
}

// swapByRename swaps the tables with one RENAME TABLE, atomic for readers,
// then saves the checkpoint. MySQL commits DDL at once, so the rename and
// the checkpoint cannot share a transaction. In between, the live table
// holds the copy, complete up to shadow.Position, while the live checkpoint
// may be behind it: a runner resuming then re-applies events the copy
// already has, which changes nothing because Put keeps a view only when its
// version is newer (and the projection skips versions it has seen). The
// checkpoint must not be ahead of the copy, though, or those events would
// be skipped: it is first moved back to shadow.Position if it is (only a
// runner running during the rebuild can have moved it there).
func (p *swappableBalances) swapByRename(ctx context.Context, shadow projection.Checkpoint) error {
	// The checkpoint is set wherever it is (projection.AnyPosition): a
	// runner's saves are conditional and refused once it has moved.
	cp := projection.Checkpoint{Name: p.Name(), Position: shadow.Position, Supersedes: projection.AnyPosition, UpdatedAt: p.clock()}
	live, err := p.cps.LoadCheckpoint(ctx, p.Name())
	if err != nil {
		return err
	}
	if live.Position > shadow.Position {
		if err := p.cps.SaveCheckpoint(ctx, cp); err != nil {
			return err
		}
	}
	old := p.live.withTable(p.live.name + oldSuffix)
	if err := old.drop(ctx); err != nil { // left by a swap that stopped after its rename
		return err
	}
	if _, err := p.live.db.ExecContext(ctx, `RENAME TABLE `+p.live.table()+` TO `+old.table()+`, `+p.fresh().table()+` TO `+p.live.table()); err != nil {
		return fmt.Errorf("rename %s over %s: %w", p.fresh().table(), p.live.table(), err)
	}
	// The copy is live: finish even if ctx ends now.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := p.cps.SaveCheckpoint(ctx, cp); err != nil {
		return fmt.Errorf("the copy is live, but its checkpoint was not saved (the projection will re-apply events, harmlessly): %w", err)
	}
	return old.drop(ctx)
}

// discardCopy drops the fresh table and the checkpoint of a swap rebuild
// that did not finish.
func (p *swappableBalances) discardCopy(ctx context.Context) error {
	return errors.Join(
		p.fresh().drop(ctx),
		p.cps.DeleteCheckpoint(ctx, p.Name()+shadowSuffix),
	)
}
