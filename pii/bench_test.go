package pii_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/fluxcapacitor/flux/internal/fastjson"
	"github.com/fluxcapacitor/flux/memstore"
	"github.com/fluxcapacitor/flux/pii"
)

type benchProfile struct {
	UserID string `json:"userId" pii:"subject"`
	Email  string `json:"email" pii:"data"`
	Name   string `json:"name" pii:"data"`
	Phone  string `json:"phone" pii:"data"`
	Street string `json:"street" pii:"data"`
}

// BenchmarkUnprotect decrypts an event with four personal fields (warm key
// cache) against decoding the same event unmarked.
func BenchmarkUnprotect(b *testing.B) {
	ctx := context.Background()
	prot, err := pii.New(pii.Config{Keys: memstore.New(), Secret: []byte(secret)})
	if err != nil {
		b.Fatal(err)
	}
	ev := benchProfile{UserID: "u1", Email: "ada.lovelace@example.com", Name: "Augusta Ada King", Phone: "+44 20 7946 0000", Street: "12 St James's Square"}
	plain := mustJSON(ev)
	sealed, err := prot.Protect(ctx, ev, plain, "event:e1")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("baseline", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var out benchProfile
			if err := fastjson.Unmarshal(plain, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unprotect", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			out := reflect.New(reflect.TypeFor[benchProfile]())
			if _, err := prot.Unprotect(ctx, sealed, out.Interface(), "event:e1"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
