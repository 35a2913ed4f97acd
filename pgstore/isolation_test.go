package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pgstore"
	"github.com/fluxcapacitor/flux/storetest"
)

// dsnWithDefaultIsolation returns the test DSN with the session setting
// default_transaction_isolation = level, as a hardened server or role
// (ALTER ROLE ... SET) would have it.
func dsnWithDefaultIsolation(t testing.TB, level string) string {
	t.Helper()
	u, err := url.Parse(testDSN(t))
	if err != nil {
		t.Fatalf("%s: %v", dsnVar, err)
	}
	q := u.Query()
	q.Set("options", "-c default_transaction_isolation="+strings.ReplaceAll(level, " ", `\ `))
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20") // pgx reads "+" as itself
	return u.String()
}

// The suite on sessions whose default isolation is not READ COMMITTED:
// the store begins its transactions at the level its design needs.
func TestConformanceAtDefaultIsolation(t *testing.T) {
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(level, func(t *testing.T) {
			dsn := dsnWithDefaultIsolation(t, level)
			storetest.Run(t, storetest.Harness{
				Short: true,
				New: func(t *testing.T) flux.EventStore {
					return openOn(t, dsn, &pgstore.Options{Schema: freshSchema(t, dsn)})
				},
			})
		})
	}
}

// Appends to distinct streams never fail when the session default is
// SERIALIZABLE: 8 writers, 40 appends each.
func TestAppendsAtSerializableDefault(t *testing.T) {
	dsn := dsnWithDefaultIsolation(t, "serializable")
	s := openOn(t, dsn, &pgstore.Options{Schema: freshSchema(t, dsn)})
	const writers, per = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, writers*per)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				_, err := s.Append(context.Background(), flux.AppendRequest{Streams: []flux.StreamAppend{
					streamOf(fmt.Sprintf("w%d-%d", w, i), flux.NoStream, event("E", `{}`)),
				}})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	failed := 0
	var first error
	for err := range errs {
		if failed == 0 {
			first = err
		}
		failed++
	}
	if failed > 0 {
		t.Fatalf("%d of %d appends to distinct streams failed; first: %v (transient: %v)", failed, writers*per, first, errors.Is(first, flux.ErrTransient))
	}
}
