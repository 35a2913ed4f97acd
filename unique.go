package flux

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// ErrValueTaken is returned by Unique.Claim when another owner holds the
// value; the error is a *ValueTakenError.
var ErrValueTaken = errors.New("flux: unique value already taken")

// ErrNotOwner is returned by Unique.Release for a value the owner does not
// hold.
var ErrNotOwner = errors.New("flux: not the owner of the unique value")

// ValueTakenError names the scope and the current owner, never the value
// (which may be personal data, such as an e-mail address).
type ValueTakenError struct {
	Scope string
	Owner string
}

func (e *ValueTakenError) Error() string {
	return fmt.Sprintf("flux: the value is already taken in scope %q (by %s)", e.Scope, e.Owner)
}

// Is reports whether target is ErrValueTaken.
func (e *ValueTakenError) Is(target error) bool { return target == ErrValueTaken }

// UniqueClaim is the aggregate behind Unique: one small stream per claimed
// value, so claims of different values never contend.
type UniqueClaim struct {
	Root
	Scope string
	Owner string
}

// UniqueValueClaimed records that Owner holds the value of the claim.
type UniqueValueClaimed struct {
	Scope string `json:"scope"`
	Owner string `json:"owner"`
}

// UniqueValueReleased records that Owner let the value go.
type UniqueValueReleased struct {
	Scope string `json:"scope"`
	Owner string `json:"owner"`
}

// Apply implements Aggregate.
func (c *UniqueClaim) Apply(e any) {
	switch e := e.(type) {
	case UniqueValueClaimed:
		c.Scope, c.Owner = e.Scope, e.Owner
	case UniqueValueReleased:
		c.Owner = ""
	}
}

// UniqueClaims is the registry definition of UniqueClaim; add it to
// NewRegistry to use Unique.
func UniqueClaims() Definition {
	return AggregateType("flux.UniqueClaim", func() *UniqueClaim { return new(UniqueClaim) },
		EventType[UniqueValueClaimed]("flux.UniqueValueClaimed", 1),
		EventType[UniqueValueReleased]("flux.UniqueValueReleased", 1),
	)
}

// Unique keeps values unique across aggregates — an e-mail address among
// users, an envelope name per user — the PHP library's registry pattern.
// Claims join the command's unit of work, so the claim and the aggregate
// that uses the value commit together or not at all; two concurrent claims
// of one value cannot both commit (one gets a ConflictError, and with
// RetryOnConflict, then ErrValueTaken).
//
//	emails := flux.Unique{Scope: "user-email", CaseInsensitive: true, Key: indexKey}
//	if err := emails.Claim(ctx, repo, cmd.Email, cmd.UserID); err != nil {
//		return err
//	}
//
// The claim's stream ID is a hash of the scope and value (an HMAC when Key
// is set, so personal values cannot be guessed from stream IDs); the value
// itself is never stored.
type Unique struct {
	// Scope separates unrelated sets of values: "user-email",
	// "envelope-name/" + userID.
	Scope string
	// CaseInsensitive compares values in lower case.
	CaseInsensitive bool
	// Key, when set, makes stream IDs HMAC-SHA256(Key, value) rather than
	// SHA-256(value). Set it for personal values. It must never change.
	Key []byte
}

// StreamID returns the ID of the claim aggregate of value.
func (u Unique) StreamID(value string) string {
	if u.CaseInsensitive {
		value = strings.ToLower(value)
	}
	msg := []byte(u.Scope + "\x00" + value)
	var sum []byte
	if len(u.Key) > 0 {
		m := hmac.New(sha256.New, u.Key)
		m.Write(msg)
		sum = m.Sum(nil)
	} else {
		s := sha256.Sum256(msg)
		sum = s[:]
	}
	return "unique-" + hex.EncodeToString(sum[:20])
}

func (u Unique) load(ctx context.Context, repo *Repository, value string) (*UniqueClaim, error) {
	if uowFrom(ctx) == nil {
		return nil, fmt.Errorf("%w: unique values are claimed inside command handlers", ErrNoUnitOfWork)
	}
	id := u.StreamID(value)
	c, err := Load[*UniqueClaim](ctx, repo, id)
	if errors.Is(err, ErrAggregateNotFound) {
		c = new(UniqueClaim)
		c.SetID(id)
		return c, Track(ctx, c)
	}
	return c, err
}

// Claim makes owner the holder of value. Claiming a value one already
// holds is a no-op; a value held by another owner is a *ValueTakenError.
func (u Unique) Claim(ctx context.Context, repo *Repository, value, owner string) error {
	if owner == "" {
		return errors.New("flux: unique claim: owner is empty")
	}
	c, err := u.load(ctx, repo, value)
	if err != nil {
		return err
	}
	switch c.Owner {
	case owner:
		return nil
	case "":
		Raise(c, UniqueValueClaimed{Scope: u.Scope, Owner: owner})
		return nil
	default:
		return &ValueTakenError{Scope: u.Scope, Owner: c.Owner}
	}
}

// Release gives value up. Releasing a value held by someone else, or by
// nobody, fails with ErrNotOwner.
func (u Unique) Release(ctx context.Context, repo *Repository, value, owner string) error {
	c, err := u.load(ctx, repo, value)
	if err != nil {
		return err
	}
	if c.Owner != owner {
		return fmt.Errorf("%w: %s does not hold the value in scope %q", ErrNotOwner, owner, u.Scope)
	}
	Raise(c, UniqueValueReleased{Scope: u.Scope, Owner: owner})
	return nil
}

// Transfer moves owner from one value to another atomically: the new value
// is claimed and the old one released in the same unit of work (a rename).
func (u Unique) Transfer(ctx context.Context, repo *Repository, from, to, owner string) error {
	if u.StreamID(from) == u.StreamID(to) {
		return nil // same value (perhaps in another case)
	}
	if err := u.Claim(ctx, repo, to, owner); err != nil {
		return err
	}
	return u.Release(ctx, repo, from, owner)
}

// Owner returns who holds value, "" when nobody does. It reads the claim
// without tracking it.
func (u Unique) Owner(ctx context.Context, repo *Repository, value string) (string, error) {
	c, err := loadAs[*UniqueClaim](ctx, repo, u.StreamID(value), LoadOptions{})
	if errors.Is(err, ErrAggregateNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return c.Owner, nil
}
