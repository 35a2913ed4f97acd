package flux_test

import (
	"context"
	"errors"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/memstore"
)

// TestUniqueNormalization pins what "the same value" means in every mode:
// NFC and NFD spellings, case, full-width forms and the Turkish dotted and
// dotless i.
func TestUniqueNormalization(t *testing.T) {
	t.Parallel()
	const (
		nfc = "jos\u00e9"  // é precomposed
		nfd = "jose\u0301" // e + combining acute
	)
	cases := []struct {
		name string
		a, b string
		same map[flux.Normalization]bool
	}{
		{"NFC and NFD", nfc, nfd, map[flux.Normalization]bool{flux.FoldCase: true, flux.ExactCase: true, flux.FoldWidth: true, flux.Verbatim: false}},
		{"upper and lower case", "JOS\u00c9", nfd, map[flux.Normalization]bool{flux.FoldCase: true, flux.ExactCase: false, flux.FoldWidth: true, flux.Verbatim: false}},
		{"German sharp s", "Stra\u00dfe", "STRASSE", map[flux.Normalization]bool{flux.FoldCase: true, flux.ExactCase: false, flux.FoldWidth: true, flux.Verbatim: false}},
		{"full-width and ASCII", "\uff2a\uff2f\uff33\uff25", "jose", map[flux.Normalization]bool{flux.FoldCase: false, flux.ExactCase: false, flux.FoldWidth: true, flux.Verbatim: false}},
		{"Turkish dotless i is its own letter", "d\u0131\u015f", "DI\u015e", map[flux.Normalization]bool{flux.FoldCase: false, flux.ExactCase: false, flux.FoldWidth: false, flux.Verbatim: false}},
		{"capital I folds to i", "IRMAK", "irmak", map[flux.Normalization]bool{flux.FoldCase: true, flux.ExactCase: false, flux.FoldWidth: true, flux.Verbatim: false}},
		{"dotted capital I folds to i with a dot", "\u0130stanbul", "i\u0307stanbul", map[flux.Normalization]bool{flux.FoldCase: true, flux.ExactCase: false, flux.FoldWidth: true, flux.Verbatim: false}},
		{"dotted capital I is not plain i", "\u0130stanbul", "istanbul", map[flux.Normalization]bool{flux.FoldCase: false, flux.ExactCase: false, flux.FoldWidth: false, flux.Verbatim: false}},
	}
	for _, c := range cases {
		for mode, want := range c.same {
			u := flux.Unique{Scope: "s", Normalize: mode}
			if got := u.StreamID(c.a) == u.StreamID(c.b); got != want {
				t.Errorf("%s, mode %d: %q and %q same = %v, want %v (normalised %q, %q)", c.name, mode, c.a, c.b, got, want, u.Normalized(c.a), u.Normalized(c.b))
			}
		}
	}
}

type claimValue struct {
	Unique flux.Unique
	Value  string
	Owner  string
}

func uniqueApp(t *testing.T) (*flux.Repository, *flux.CommandBus) {
	t.Helper()
	reg, err := flux.NewRegistry(flux.UniqueClaims())
	if err != nil {
		t.Fatal(err)
	}
	repo, err := flux.NewRepository(flux.Config{Store: memstore.New(), Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	bus, err := flux.NewCommandBus(flux.CommandBusConfig{Repository: repo})
	if err != nil {
		t.Fatal(err)
	}
	if err := flux.HandleCommand(bus, func(ctx context.Context, c claimValue) error {
		return c.Unique.Claim(ctx, repo, c.Value, c.Owner)
	}); err != nil {
		t.Fatal(err)
	}
	return repo, bus
}

// TestUniqueClaimsSurviveUnicode: with the default Unique, "José" claimed
// in NFC is taken for a claim in NFD, in upper case, and (with FoldWidth)
// in full width.
func TestUniqueClaimsSurviveUnicode(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, bus := uniqueApp(t)
	emails := flux.Unique{Scope: "email"}
	if err := bus.Dispatch(ctx, claimValue{emails, "jos\u00e9@example.com", "ann"}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"jose\u0301@example.com", "JOS\u00c9@EXAMPLE.COM", "Jose\u0301@Example.com"} {
		var vt *flux.ValueTakenError
		if err := bus.Dispatch(ctx, claimValue{emails, v, "bob"}); !errors.As(err, &vt) || vt.Owner != "ann" {
			t.Fatalf("claim of %q: %v, want taken by ann", v, err)
		}
	}
	wide := flux.Unique{Scope: "handle", Normalize: flux.FoldWidth}
	if err := bus.Dispatch(ctx, claimValue{wide, "\uff21\uff4e\uff4e", "ann"}); err != nil { // ＡＮＮ
		t.Fatal(err)
	}
	if err := bus.Dispatch(ctx, claimValue{wide, "ann", "bob"}); !errors.Is(err, flux.ErrValueTaken) {
		t.Fatalf("full-width then ASCII: %v, want taken", err)
	}
}

// TestUniqueFindsClaimsMadeBeforeNormalization: a claim stored under the
// stream ID of the old, unnormalised key still holds its value.
func TestUniqueFindsClaimsMadeBeforeNormalization(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	repo, bus := uniqueApp(t)
	for _, c := range []struct {
		name string
		old  flux.Unique // how the claim was keyed before
		now  flux.Unique
	}{
		{"case-sensitive claim", flux.Unique{Scope: "a", Normalize: flux.Verbatim}, flux.Unique{Scope: "a"}},
		{"case-insensitive claim", flux.Unique{Scope: "b", Normalize: flux.Verbatim}, flux.Unique{Scope: "b", CaseInsensitive: true}},
	} {
		value := "Jose\u0301" // NFD, mixed case: its old and new keys differ
		legacy := c.old.StreamID(value)
		if c.now.CaseInsensitive {
			legacy = c.old.StreamID("jose\u0301")
		}
		if legacy == c.now.StreamID(value) {
			t.Fatalf("%s: old and new stream IDs are the same; the test proves nothing", c.name)
		}
		claim, err := flux.NewAggregate[*flux.UniqueClaim](repo.Registry(), legacy)
		if err != nil {
			t.Fatal(err)
		}
		flux.Raise(claim, flux.UniqueValueClaimed{Scope: c.now.Scope, Owner: "ann"})
		if err := repo.Save(ctx, claim); err != nil {
			t.Fatal(err)
		}
		if owner, err := c.now.Owner(ctx, repo, value); err != nil || owner != "ann" {
			t.Fatalf("%s: owner = %q (%v), want ann", c.name, owner, err)
		}
		if err := bus.Dispatch(ctx, claimValue{c.now, value, "bob"}); !errors.Is(err, flux.ErrValueTaken) {
			t.Fatalf("%s: claim by bob: %v, want taken", c.name, err)
		}
		if err := bus.Dispatch(ctx, claimValue{c.now, value, "ann"}); err != nil {
			t.Fatalf("%s: re-claim by ann: %v", c.name, err)
		}
	}
}
