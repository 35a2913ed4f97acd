package pgstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/fluxcapacitor/flux"
)

// FuzzJSONBText feeds JSON documents to the jsonb adapter: for valid JSON
// it must return valid JSON that jsonb can store (no \u0000, no unpaired
// surrogate) and that decodes to the input with U+FFFD for every NUL, keep
// the exact input exactly when it changed anything, and never panic on
// anything else.
func FuzzJSONBText(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":"b"}`, `"\u0000"`, `{"k\u0000":"v\u0000w"}`, `"\ud800"`, `"\udc00x"`,
		`"\ud83d\ude80"`, `"\uD83D\uDE80"`, `"\\u0000"`, `"\\\u0000"`, `["\ud800\ud800","\ud800\u0041"]`,
		`"\u00e9\n\t\"\/"`, `{"a":[1,2.5e10,true,null]}`, `"\`, `"\u12`, `"\u0000`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		stored, exact := jsonbText(in) // must not panic on any input
		if !json.Valid(in) {
			return
		}
		if exact == nil {
			if stored != string(in) {
				t.Fatalf("jsonbText(%q) changed the text without keeping the exact copy: %q", in, stored)
			}
		} else if *exact != string(in) {
			t.Fatalf("exact copy %q differs from input %q", *exact, in)
		}
		if !json.Valid([]byte(stored)) {
			t.Fatalf("jsonbText(%q) = %q, not valid JSON", in, stored)
		}
		if needsReplacing([]byte(stored)) {
			t.Fatalf("jsonbText(%q) = %q still holds an escape jsonb refuses", in, stored)
		}
		var want, got any
		if err := json.Unmarshal(in, &want); err != nil {
			return
		}
		if err := json.Unmarshal([]byte(stored), &got); err != nil {
			t.Fatalf("decode %q: %v", stored, err)
		}
		if !reflect.DeepEqual(nulToReplacement(want), got) {
			t.Fatalf("jsonbText(%q) = %q decodes to %#v, want %#v", in, stored, got, nulToReplacement(want))
		}
	})
}

// nulToReplacement replaces NUL with U+FFFD in every string and key of a
// decoded JSON value. (encoding/json already decodes unpaired surrogates to
// U+FFFD.)
func nulToReplacement(v any) any {
	switch x := v.(type) {
	case string:
		return strings.ReplaceAll(x, "\x00", "\uFFFD")
	case []any:
		for i := range x {
			x[i] = nulToReplacement(x[i])
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[strings.ReplaceAll(k, "\x00", "\uFFFD")] = nulToReplacement(e)
		}
		return out
	}
	return v
}

// FuzzDecodeValues feeds arbitrary column values to the row decoder: it
// must fill the record or return ErrCorruptEvent, never panic.
func FuzzDecodeValues(f *testing.F) {
	i8 := func(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }
	f.Add(i8(1), []byte("stream"), i8(1), []byte(`{"a":1}`), []byte(nil), []byte(`{"tenant":"acme"}`), i8(0), false)
	f.Add(i8(7), []byte("s"), i8(3), []byte(`{}`), []byte(`{"a":"\u0000"}`), []byte(nil), i8(1<<62), true)
	f.Add(i8(7), []byte("s"), i8(3), []byte("\x01{}"), []byte(nil), []byte("\x01[1]"), i8(-1), true)
	f.Add([]byte{1}, []byte(nil), []byte{}, []byte(nil), []byte(nil), []byte("x"), []byte{0}, false)
	f.Fuzz(func(t *testing.T, pos, stream, version, payload, exact, metadata, occurred []byte, binaryJSONB bool) {
		d := decoder{fast: true, jsonbBinary: binaryJSONB}
		id := make([]byte, 16)
		v := [][]byte{pos, stream, version, []byte("Thing"), id, []byte("E"), {0, 0, 0, 1},
			payload, exact, metadata, occurred, []byte("r"), []byte("c"), nil}
		r, err := d.decodeValues(v)
		if err != nil {
			if !errors.Is(err, flux.ErrCorruptEvent) {
				t.Fatalf("err = %v, want ErrCorruptEvent", err)
			}
			return
		}
		if r.OccurredAt.Location().String() != "UTC" {
			t.Fatalf("time %v not in UTC", r.OccurredAt)
		}
		if r.Payload == nil {
			t.Fatal("decoded a record without a payload")
		}
	})
}
