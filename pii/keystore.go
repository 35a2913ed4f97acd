package pii

import (
	"context"
	"errors"
	"time"

	"github.com/fluxcapacitor/flux"
)

// Errors of key stores.
var (
	// ErrKeyNotFound is returned by KeyStore.LoadKey when the subject has
	// no data key (it never had personal data stored).
	ErrKeyNotFound = errors.New("pii: no data key for subject")

	// ErrForgotten is returned when the subject was forgotten: LoadKey
	// finds its tombstone, and CreateKey refuses to give it a new key, so
	// re-saving an old event can never resurrect a forgotten person. It
	// matches flux.ErrSubjectForgotten.
	ErrForgotten error = forgottenError{}
)

type forgottenError struct{}

func (forgottenError) Error() string        { return "pii: subject was forgotten" }
func (forgottenError) Is(target error) bool { return target == flux.ErrSubjectForgotten }

// StoredKey is a subject's data key as stored: wrapped (encrypted) by the
// key-encryption key, never in clear.
type StoredKey struct {
	// Subject is the data subject, usually a user ID. Subject IDs are
	// stored in clear, so they must not be personal data themselves.
	Subject string
	// Wrapped is the data key sealed by the key-encryption key, in the
	// envelope format of this package (text).
	Wrapped   string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Forgetting records that a subject was forgotten: who asked and when,
// never any personal data.
type Forgetting struct {
	Subject string
	// At is when the key was deleted.
	At time.Time
	// By names who requested it (an operator, a service); free text.
	By string
	// Reason is an optional free-text reason ("GDPR art. 17 request 42").
	Reason string
}

// KeyStore keeps one wrapped data key per subject and a tombstone for every
// forgotten subject. sqlitestore, pgstore, mysqlstore and memstore
// implement it in the PHP library's encryption_keys table; storetest holds
// its conformance cases.
type KeyStore interface {
	// LoadKey returns the subject's key, ErrForgotten if it was forgotten,
	// or ErrKeyNotFound.
	LoadKey(ctx context.Context, subject string) (StoredKey, error)

	// CreateKey stores k unless the subject already has a key, and returns
	// the key that is stored: under concurrent first uses exactly one key
	// wins and every caller gets it. It fails with ErrForgotten when the
	// subject was forgotten.
	CreateKey(ctx context.Context, k StoredKey) (StoredKey, error)

	// ForgetSubject deletes the subject's key and records f, atomically.
	// Forgetting a subject twice keeps the first record and succeeds.
	ForgetSubject(ctx context.Context, f Forgetting) error

	// Forgotten returns the subject's forgetting record, and false if the
	// subject was not forgotten.
	Forgotten(ctx context.Context, subject string) (Forgetting, bool, error)

	// RewrapKeys replaces every stored key k with rewrap(k), in one
	// transaction: all keys are rewrapped or none. It returns the number
	// of keys rewrapped. Used to rotate the key-encryption secret.
	RewrapKeys(ctx context.Context, rewrap func(k StoredKey) (StoredKey, error)) (int, error)
}
