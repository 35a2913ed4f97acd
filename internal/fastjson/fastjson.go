// Package fastjson decodes JSON objects into Go structs with a plan
// compiled once per type: string, bool, integer and float fields, nested
// structs and slices of those are decoded in one pass without reflection
// lookups per key; every other field type is handed to encoding/json for
// its own value, and types whose rules are subtle (embedded structs,
// ",string" options, custom unmarshalers, clashing names) are left to
// encoding/json entirely. The result is the same as encoding/json's —
// same values, same accepted and rejected inputs — which a differential
// fuzz test pins down.
package fastjson

import (
	"encoding"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
)

// Plan decodes one struct type.
type Plan struct {
	st *structPlan
	// order remembers the key order DecodeFields last saw: the objects an
	// upcaster chain produces all have the same keys in the same order,
	// so comparing keys with it answers without a map lookup.
	order  atomic.Pointer[fieldOrder]
	misses atomic.Uint32
}

// fieldOrder is an immutable key order and the field of each key (nil for
// a key the struct does not have).
type fieldOrder struct {
	keys   []string
	fields []*fieldPlan
}

type kind uint8

const (
	kString kind = iota
	kBool
	kInt
	kUint
	kFloat
	kStruct
	kSlice    // slice of a native element
	kFallback // encoding/json decodes this field's value
)

type fieldPlan struct {
	name  string
	index int
	kind  kind
	bits  int
	typ   reflect.Type
	sub   *structPlan // kStruct
	elem  *fieldPlan  // kSlice
}

type structPlan struct {
	fields  []fieldPlan
	byExact map[string]*fieldPlan
	byFold  map[string]*fieldPlan
}

var (
	plans   sync.Map // reflect.Type -> *Plan (nil when unsupported)
	unmarsh = reflect.TypeFor[json.Unmarshaler]()
	textUnm = reflect.TypeFor[encoding.TextUnmarshaler]()
	errType = ErrType
	errSynt = ErrSyntax
)

// Errors of Decode; they never quote the input.
var (
	// ErrSyntax: the input is not valid JSON.
	ErrSyntax = errors.New("invalid JSON")
	// ErrType: a JSON value does not fit its Go field (a string for an
	// int, a number out of range, an object for a string).
	ErrType = errors.New("a JSON value does not fit its Go type")
)

// For returns the plan of struct type t, or nil when encoding/json must
// decode t. Plans are cached.
func For(t reflect.Type) *Plan {
	if p, ok := plans.Load(t); ok {
		return p.(*Plan)
	}
	var p *Plan
	if st := compileStruct(t, map[reflect.Type]bool{}); st != nil {
		p = &Plan{st: st}
	}
	actual, _ := plans.LoadOrStore(t, p)
	return actual.(*Plan)
}

func custom(t reflect.Type) bool {
	return t.Implements(unmarsh) || reflect.PointerTo(t).Implements(unmarsh) ||
		t.Implements(textUnm) || reflect.PointerTo(t).Implements(textUnm)
}

// compileStruct returns nil when the struct's rules are left to
// encoding/json.
func compileStruct(t reflect.Type, seen map[reflect.Type]bool) *structPlan {
	if t.Kind() != reflect.Struct || custom(t) || seen[t] {
		return nil
	}
	seen[t] = true
	defer delete(seen, t)
	sp := &structPlan{byExact: map[string]*fieldPlan{}, byFold: map[string]*fieldPlan{}}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.Anonymous {
			return nil // embedding promotes fields: encoding/json's rules
		}
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if opts != "" {
			for _, o := range strings.Split(opts, ",") {
				if o == "string" {
					return nil
				}
			}
		}
		if name == "" || !validTagName(name) {
			name = f.Name
		}
		fp := fieldPlan{name: name, index: i, typ: f.Type}
		compileField(&fp, f.Type, seen)
		sp.fields = append(sp.fields, fp)
	}
	for i := range sp.fields {
		fp := &sp.fields[i]
		if _, dup := sp.byExact[fp.name]; dup {
			return nil // clashing names: encoding/json drops both
		}
		sp.byExact[fp.name] = fp
		folded := foldName(fp.name)
		if _, ok := sp.byFold[folded]; !ok {
			sp.byFold[folded] = fp
		}
	}
	return sp
}

func compileField(fp *fieldPlan, t reflect.Type, seen map[reflect.Type]bool) {
	fp.kind = kFallback
	if custom(t) {
		return
	}
	switch t.Kind() {
	case reflect.String:
		fp.kind = kString
	case reflect.Bool:
		fp.kind = kBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		fp.kind, fp.bits = kInt, t.Bits()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		fp.kind, fp.bits = kUint, t.Bits()
	case reflect.Float32, reflect.Float64:
		fp.kind, fp.bits = kFloat, t.Bits()
	case reflect.Struct:
		if sub := compileStruct(t, seen); sub != nil {
			fp.kind, fp.sub = kStruct, sub
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return // []byte is base64
		}
		elem := &fieldPlan{typ: t.Elem()}
		compileField(elem, t.Elem(), seen)
		if elem.kind != kFallback {
			fp.kind, fp.elem = kSlice, elem
		}
	}
}

// validTagName mirrors encoding/json's check of tag names.
func validTagName(s string) bool {
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}

// foldName folds a name so that foldName(x) == foldName(y) exactly when
// x and y are equal under Unicode simple case folding: ASCII letters upper
// case, other runes the smallest rune of their fold orbit.
func foldName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < utf8.RuneSelf {
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
			b.WriteRune(r)
			continue
		}
		if r == utf8.RuneError {
			b.WriteRune(r)
			continue
		}
		for {
			r2 := unicode.SimpleFold(r)
			if r2 <= r {
				r = r2
				break
			}
			r = r2
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Decode decodes data into v, an addressable value of the plan's struct
// type, with encoding/json's result: the same values (fields absent from
// the input keep theirs), and an error exactly when encoding/json would
// fail. Errors (ErrSyntax, ErrType) do not quote the input.
func (p *Plan) Decode(data []byte, v reflect.Value) error {
	d := decoder{data: data}
	return d.document(p.st, v)
}

// Field is one top-level field of an object split into its fields (a
// flux.Payload): the unescaped key and the raw JSON value.
type Field struct {
	Key []byte // unescaped
	Raw []byte // the value's JSON
}

// DecodeFields decodes into v, an addressable value of the plan's struct
// type, the object whose top-level fields fs holds. The result is
// Decode's on the object the fields form, with values of unknown keys left
// unexamined.
func (p *Plan) DecodeFields(v reflect.Value, fs []Field) error {
	o := p.order.Load()
	if o != nil && len(o.keys) != len(fs) {
		o = nil
	}
	missed := o == nil
	for i := range fs {
		key, raw := fs[i].Key, fs[i].Raw
		var f *fieldPlan
		if o != nil && string(key) == o.keys[i] {
			f = o.fields[i]
		} else {
			missed = true
			f = p.st.field(key)
		}
		if f == nil {
			continue
		}
		d := decoder{data: raw}
		d.space()
		if err := d.value(f, v.Field(f.index), 2); err != nil {
			return err
		}
		d.space()
		if d.pos != len(d.data) {
			return errSynt
		}
	}
	// Adopt this object's order on the first miss and then on one miss in
	// sixteen, so that objects of alternating shapes do not allocate a new
	// order each time.
	if missed && p.misses.Add(1)%16 == 1 {
		no := &fieldOrder{keys: make([]string, len(fs)), fields: make([]*fieldPlan, len(fs))}
		for i := range fs {
			no.keys[i] = string(fs[i].Key)
			no.fields[i] = p.st.field(fs[i].Key)
		}
		p.order.Store(no)
	}
	return nil
}

// field finds the field a key decodes into, as encoding/json does: the
// exact name first, then a case-insensitive match. No allocation: the
// compiler looks string(key) up in place.
func (sp *structPlan) field(key []byte) *fieldPlan {
	if f := sp.byExact[string(key)]; f != nil {
		return f
	}
	return sp.byFold[foldName(string(key))]
}

// UnmarshalViews is Unmarshal, except that the top-level string fields
// fields (Go field indices) whose value starts with prefix (and has no
// escapes) are set as views into data, not copies: the caller must replace
// every such field before data changes or is reused. Package pii uses it
// for envelopes it decrypts at once.
func UnmarshalViews(data []byte, ptr any, prefix string, fields []int) error {
	v := reflect.ValueOf(ptr)
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		if p := For(v.Type().Elem()); p != nil {
			d := decoder{data: data, view: prefix, viewFields: fields}
			return d.document(p.st, v.Elem())
		}
	}
	return json.Unmarshal(data, ptr)
}

// Unmarshal decodes data into ptr (a pointer to a struct) with
// encoding/json's result, through a plan when the type has one.
func Unmarshal(data []byte, ptr any) error {
	v := reflect.ValueOf(ptr)
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		if p := For(v.Type().Elem()); p != nil {
			return p.Decode(data, v.Elem())
		}
	}
	return json.Unmarshal(data, ptr)
}
