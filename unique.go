package flux

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
	"golang.org/x/text/width"
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
//	emails := flux.Unique{Scope: "user-email", Key: indexKey}
//	if err := emails.Claim(ctx, repo, cmd.Email, cmd.UserID); err != nil {
//		return err
//	}
//
// Values are compared after normalisation (see Normalization): by default
// "José" typed on a Mac (NFD) and on Windows (NFC) and "JOSÉ" are the same
// value. The claim's stream ID is a hash of the scope and the normalised
// value (an HMAC when Key is set, so personal values cannot be guessed from
// stream IDs); the value itself is never stored.
type Unique struct {
	// Scope separates unrelated sets of values: "user-email",
	// "envelope-name/" + userID.
	Scope string
	// Normalize says which spellings of a value are the same value.
	// Default FoldCase. It must not change once values are claimed
	// (except from Verbatim or ExactCase to a folding mode, see
	// Claim's note on older claims).
	Normalize Normalization
	// CaseInsensitive is how case-insensitive claims were asked for before
	// Normalize existed. Claims are now case-insensitive by default; keep
	// it set if it was set, so that values claimed before (stored under
	// their lower-case spelling) are still found.
	//
	// Deprecated: use Normalize.
	CaseInsensitive bool
	// Key, when set, makes stream IDs HMAC-SHA256(Key, value) rather than
	// SHA-256(value). Set it for personal values. It must never change.
	Key []byte
}

// Normalization says which spellings of a unique value are the same
// value. Every mode first brings the value to Unicode NFC, so a letter
// with an accent is one value however it was typed (precomposed "é" or
// "e" + combining acute), except Verbatim.
type Normalization int

const (
	// FoldCase (the default): NFC, then Unicode full case folding, which
	// is language-independent: "Straße" = "STRASSE" = "strasse", "José" =
	// "JOSÉ", "I" = "i" and "İ" (dotted capital I) = "i̇"; the Turkish
	// dotless "ı" is a letter of its own, so "dış" and "DIŞ" differ.
	// Full-width forms differ from their ASCII look-alikes ("ＡＢＣ" ≠
	// "abc"); use FoldWidth to unify them.
	FoldCase Normalization = iota
	// ExactCase: NFC only; "José" and "josé" differ.
	ExactCase
	// FoldWidth: as FoldCase, after mapping full-width and half-width
	// forms to their usual width ("ＡＢＣ" = "abc", half-width katakana =
	// katakana) — for identifiers typed with East Asian input methods.
	FoldWidth
	// Verbatim compares bytes: no normalisation at all (the behaviour of
	// Unique before normalisation, without CaseInsensitive).
	Verbatim
)

// Normalized returns value as Unique compares it under u.Normalize.
func (u Unique) Normalized(value string) string {
	switch u.Normalize {
	case Verbatim:
		return value
	case ExactCase:
		return norm.NFC.String(value)
	case FoldWidth:
		value = width.Fold.String(value)
	}
	return norm.NFC.String(cases.Fold().String(norm.NFC.String(value)))
}

// StreamID returns the ID of the claim aggregate of value.
func (u Unique) StreamID(value string) string { return u.hash(u.Normalized(value)) }

// legacyStreamID is the stream ID a claim of value had before values were
// normalised.
func (u Unique) legacyStreamID(value string) string {
	if u.CaseInsensitive {
		value = strings.ToLower(value)
	}
	return u.hash(value)
}

func (u Unique) hash(value string) string {
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

// load returns the claim of value, tracked by the command's unit of work:
// the claim under the normalised value's stream, or, when there is none,
// a held claim made before normalisation under the value's old stream ID,
// or else a new claim.
func (u Unique) load(ctx context.Context, repo *Repository, value string) (*UniqueClaim, error) {
	if uowFrom(ctx) == nil {
		return nil, fmt.Errorf("%w: unique values are claimed inside command handlers", ErrNoUnitOfWork)
	}
	id := u.StreamID(value)
	c, err := Load[*UniqueClaim](ctx, repo, id)
	if !errors.Is(err, ErrAggregateNotFound) {
		return c, err
	}
	if old := u.legacyStreamID(value); old != id {
		held, err := u.legacyClaim(ctx, repo, old)
		if err != nil || held {
			if err != nil {
				return nil, err
			}
			return Load[*UniqueClaim](ctx, repo, old)
		}
	}
	c = new(UniqueClaim)
	c.SetID(id)
	return c, Track(ctx, c)
}

// legacyClaim reports whether the claim stream id (of an older key) holds
// a value.
func (u Unique) legacyClaim(ctx context.Context, repo *Repository, id string) (bool, error) {
	c, err := loadAs[*UniqueClaim](ctx, repo, id, LoadOptions{})
	switch {
	case errors.Is(err, ErrAggregateNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return c.Owner != "", nil
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
	if u.Normalized(from) == u.Normalized(to) {
		return nil // the same value, perhaps spelt otherwise
	}
	if err := u.Claim(ctx, repo, to, owner); err != nil {
		return err
	}
	return u.Release(ctx, repo, from, owner)
}

// Owner returns who holds value, "" when nobody does. It reads the claim
// without tracking it.
func (u Unique) Owner(ctx context.Context, repo *Repository, value string) (string, error) {
	id := u.StreamID(value)
	c, err := loadAs[*UniqueClaim](ctx, repo, id, LoadOptions{})
	if errors.Is(err, ErrAggregateNotFound) {
		if old := u.legacyStreamID(value); old != id {
			c, err = loadAs[*UniqueClaim](ctx, repo, old, LoadOptions{})
		}
	}
	if errors.Is(err, ErrAggregateNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return c.Owner, nil
}
