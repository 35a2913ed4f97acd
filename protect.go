package flux

import (
	"context"
	"reflect"
	"strings"
	"sync"
)

// DataProtector encrypts the fields of events and snapshot states that are
// marked as personal data, and decrypts them on every read. Package pii
// implements it; set it as Config.Protector. The scope binds ciphertext to
// where it was written ("event:<event ID>", "snapshot:<stream>@<version>"),
// so a value copied elsewhere does not decrypt.
//
// A protector may also implement CheckType(reflect.Type) error (pii does):
// NewRepository then checks every registered event type with it, so marks
// that cannot work fail at start-up.
type DataProtector interface {
	// Protect returns data (v encoded as JSON) with v's personal fields
	// encrypted. It fails for a subject that was forgotten.
	Protect(ctx context.Context, v any, data []byte, scope string) ([]byte, error)
	// Unprotect decodes data into target, a pointer, decrypting personal
	// fields. Fields whose subject was forgotten get replacement values and
	// are listed in forgotten (as field paths, never values).
	Unprotect(ctx context.Context, data []byte, target any, scope string) (forgotten []string, err error)
}

// PersonalDataTag is the struct tag that marks personal data: `pii:"data"`
// on a field, `pii:"subject"` on the field naming the data subject.
const PersonalDataTag = "pii"

var piiTypes sync.Map // reflect.Type -> bool

// HasPersonalData reports whether values of type t (a struct, or a pointer
// to one) carry fields tagged `pii:"data"`, at any depth. The result is
// cached per type.
func HasPersonalData(t reflect.Type) bool {
	if v, ok := piiTypes.Load(t); ok {
		return v.(bool)
	}
	has := hasPIITags(t, map[reflect.Type]bool{})
	piiTypes.Store(t, has)
	return has
}

func hasPIITags(t reflect.Type, seen map[reflect.Type]bool) bool {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return false
	}
	seen[t] = true
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag, ok := f.Tag.Lookup(PersonalDataTag); ok && strings.Split(tag, ",")[0] == "data" {
			return true
		}
		if hasPIITags(f.Type, seen) {
			return true
		}
	}
	return false
}
