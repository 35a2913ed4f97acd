// Package backend holds the checks and algorithms that every event store
// backend must apply the same way, so that implementers call them instead
// of writing their own.
//
// A backend (memstore, sqlitestore, pgstore, mysqlstore, or one of yours)
// supplies storage: SQL or maps. What is accepted, and what the caller is
// told when it is not, is decided here, once. The package is part of the
// core module and uses the standard library only.
//
// Today it holds the validation of a pii.Forgetting (CheckForgetting);
// issue 16 moves the other shared algorithms (idempotency, snapshot
// retention, checkpoints, key rewrap) here as well.
package backend
