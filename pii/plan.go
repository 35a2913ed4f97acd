package pii

import (
	"encoding/json"
	"fmt"

	"github.com/fluxcapacitor/flux/internal/fastjson"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
)

// HasSubject is implemented by values that name their data subject with a
// method instead of a `pii:"subject"` field: an aggregate whose snapshot
// state is the aggregate itself usually returns its ID.
type HasSubject interface {
	PersonalDataSubject() string
}

// plan is what protecting one Go type takes, found once and cached.
type plan struct {
	typ        reflect.Type
	typeName   string
	fields     []fieldPlan
	subjectKey string // top-level JSON key of the `pii:"subject"` field
	subjectIdx []int  // its Go field index path
	method     bool   // the type implements HasSubject
	err        error  // the type cannot be protected
	// direct: every personal field is a top-level string field and the
	// subject a field, so Unprotect can decode the stored object as it is
	// (envelopes land in the string fields) and decrypt in place.
	direct       bool
	directFields []int // the Go indices of the personal fields, when direct
}

type fieldPlan struct {
	path     []string // JSON keys; "[]" stands for every element of an array
	isString bool     // forgotten values read as Config.Replacement
	index    []int    // Go field index path, for a top-level field
	// replace is the JSON a forgotten value reads as, from the tag's
	// replace= option; nil: the default (Config.Replacement for strings,
	// the zero value otherwise). replaceText is its text for strings.
	replace     []byte
	replaceText string
}

func (f fieldPlan) name() string { return strings.ReplaceAll(strings.Join(f.path, "."), ".[]", "[]") }

var (
	plans    sync.Map // reflect.Type -> *plan
	lastPlan atomic.Pointer[plan]
)

func planFor(t reflect.Type) *plan {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	// A load decodes one type many times in a row: the last plan found
	// answers without a map lookup.
	if p := lastPlan.Load(); p != nil && p.typ == t {
		return p
	}
	if p, ok := plans.Load(t); ok {
		lastPlan.Store(p.(*plan))
		return p.(*plan)
	}
	p := &plan{typ: t, typeName: t.String()}
	if t.Kind() == reflect.Struct {
		p.err = p.walk(t, nil, nil, map[reflect.Type]bool{})
		if p.err == nil && p.subjectKey == "" && reflect.PointerTo(t).Implements(reflect.TypeFor[HasSubject]()) {
			p.method = true
		}
		p.direct = p.err == nil && p.subjectKey != "" && len(p.fields) > 0 && fastjson.For(t) != nil
		for _, f := range p.fields {
			if len(f.path) != 1 || !f.isString || len(f.index) != 1 {
				p.direct = false
			}
		}
		if p.direct {
			for _, f := range p.fields {
				p.directFields = append(p.directFields, f.index[0])
			}
		}
	}
	actual, _ := plans.LoadOrStore(t, p)
	return actual.(*plan)
}

func (p *plan) unsupported(field, format string, args ...any) error {
	return &FieldError{Type: p.typeName, Field: field, Err: fmt.Errorf("%w: "+format, append([]any{ErrUnsupportedField}, args...)...)}
}

func (p *plan) walk(t reflect.Type, prefix []string, index []int, seen map[reflect.Type]bool) error {
	if seen[t] {
		return nil // recursive types: the first level is enough to find marks
	}
	seen[t] = true
	defer delete(seen, t)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		mark, opts, _ := strings.Cut(f.Tag.Get("pii"), ",")
		name, stored := jsonName(f)
		idx := append(append([]int(nil), index...), i)
		display := strings.Join(append(append([]string(nil), prefix...), name), ".")
		if f.Anonymous && f.Tag.Get("json") == "" {
			if et := deref(f.Type); et.Kind() == reflect.Struct {
				if mark != "" {
					return p.unsupported(f.Name, "embedded struct %s is marked; mark its fields instead", et)
				}
				if err := p.walk(et, prefix, idx, seen); err != nil {
					return err
				}
				continue
			}
		}
		if !stored {
			if mark != "" {
				return p.unsupported(f.Name, "field %s is marked %q but JSON does not store it (unexported or json:\"-\")", f.Name, mark)
			}
			continue
		}
		path := append(append([]string(nil), prefix...), name)
		switch mark {
		case "data":
			if err := encodable(f.Type); err != nil {
				return p.unsupported(display, "%v", err)
			}
			fp := fieldPlan{path: path, isString: f.Type.Kind() == reflect.String, index: idx}
			if opts != "" {
				value, ok := strings.CutPrefix(opts, "replace=")
				if !ok {
					return p.unsupported(display, "unknown option %q in pii:\"data,...\"; the only option is replace=<value>", opts)
				}
				if fp.replace, fp.replaceText, ok = replacementJSON(f.Type, value); !ok {
					return p.unsupported(display, "replace=%q is not a value of type %s (write it as JSON, or as the text of a string-encoded value such as a time)", value, f.Type)
				}
			}
			p.fields = append(p.fields, fp)
		case "subject":
			if opts != "" {
				return p.unsupported(display, "pii:\"subject\" takes no options, not %q", opts)
			}
			if f.Type.Kind() != reflect.String {
				return p.unsupported(display, "the subject field must be a string, not %s", f.Type)
			}
			if len(prefix) > 0 {
				return p.unsupported(display, "the subject field must be a top-level field")
			}
			if p.subjectKey != "" {
				return p.unsupported(display, "two subject fields (%s and %s)", p.subjectKey, name)
			}
			p.subjectKey, p.subjectIdx = name, idx
		case "":
			if err := p.descend(f.Type, path, seen, display); err != nil {
				return err
			}
		default:
			return p.unsupported(display, "unknown pii tag %q; use pii:\"data\" or pii:\"subject\"", mark)
		}
	}
	return nil
}

// descend looks for marks inside a field's type: nested structs, pointers
// to them, and slices or arrays of them. Marks inside map values cannot be
// located in JSON and are refused.
func (p *plan) descend(t reflect.Type, path []string, seen map[reflect.Type]bool, display string) error {
	t = deref(t)
	switch t.Kind() {
	case reflect.Struct:
		return p.walk(t, path, nil, seen)
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return nil // []byte encodes as a string
		}
		return p.descend(t.Elem(), append(path, "[]"), seen, display+"[]")
	case reflect.Map:
		if containsMarks(t.Elem(), map[reflect.Type]bool{}) {
			return p.unsupported(display, "personal data inside map values cannot be located; mark the whole map field")
		}
	}
	return nil
}

// replacementJSON turns a tag's replace= value into the JSON a forgotten
// field of type t reads as: for strings the value itself; for other kinds
// the value as a JSON literal (42, true, [], {"a":1}) or, failing that, as
// a JSON string (a time.Time's "2000-01-01T00:00:00Z"). ok is false when
// neither decodes into t.
func replacementJSON(t reflect.Type, value string) (raw []byte, text string, ok bool) {
	if t.Kind() == reflect.String {
		raw, _ := json.Marshal(value)
		return raw, value, true
	}
	for _, candidate := range [][]byte{[]byte(value), mustMarshal(value)} {
		if json.Valid(candidate) && json.Unmarshal(candidate, reflect.New(t).Interface()) == nil {
			return candidate, "", true
		}
	}
	return nil, "", false
}

func mustMarshal(s string) []byte { b, _ := json.Marshal(s); return b }

func containsMarks(t reflect.Type, seen map[reflect.Type]bool) bool {
	t = deref(t)
	for t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
		t = deref(t.Elem())
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return false
	}
	seen[t] = true
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("pii") != "" || containsMarks(t.Field(i).Type, seen) {
			return true
		}
	}
	return false
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// encodable refuses kinds encoding/json cannot encode.
func encodable(t reflect.Type) error {
	seen := map[reflect.Type]bool{}
	var check func(t reflect.Type) error
	check = func(t reflect.Type) error {
		if seen[t] {
			return nil
		}
		seen[t] = true
		switch t.Kind() {
		case reflect.Chan, reflect.Func, reflect.Complex64, reflect.Complex128, reflect.UnsafePointer:
			return fmt.Errorf("kind %s cannot be encoded as JSON", t.Kind())
		case reflect.Pointer, reflect.Slice, reflect.Array:
			return check(t.Elem())
		case reflect.Map:
			if err := check(t.Key()); err != nil {
				return err
			}
			return check(t.Elem())
		case reflect.Struct:
			for i := 0; i < t.NumField(); i++ {
				if f := t.Field(i); f.IsExported() && f.Tag.Get("json") != "-" {
					if err := check(f.Type); err != nil {
						return fmt.Errorf("%s: %w", f.Name, err)
					}
				}
			}
		}
		return nil
	}
	return check(t)
}

// jsonName returns the JSON key encoding/json uses for f, and whether it
// stores f at all.
func jsonName(f reflect.StructField) (string, bool) {
	if !f.IsExported() && !f.Anonymous {
		return "", false
	}
	tag := f.Tag.Get("json")
	if tag == "-" {
		return "", false
	}
	name, _, _ := strings.Cut(tag, ",")
	if name == "" {
		name = f.Name
	}
	return name, f.IsExported()
}
