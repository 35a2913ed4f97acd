// Package pgstore is the PostgreSQL flux.EventStore, on pgx v5.
package pgstore
