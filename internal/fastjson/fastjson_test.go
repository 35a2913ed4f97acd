package fastjson

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

type Inner struct {
	Street string   `json:"street"`
	No     int16    `json:"no"`
	Tags   []string `json:"tags"`
}

type Event struct {
	ID       string            `json:"id"`
	Amount   int64             `json:"amount"`
	Small    int8              `json:"small"`
	Count    uint32            `json:"count"`
	Ratio    float64           `json:"ratio"`
	Half     float32           `json:"half"`
	OK       bool              `json:"ok"`
	Note     string            // no tag: "Note"
	Skipped  string            `json:"-"`
	Dash     string            `json:"-,"`
	Bad      string            `json:"a\\b"` // invalid tag name: "Bad"
	Home     Inner             `json:"home"`
	Homes    []Inner           `json:"homes"`
	Nums     []int             `json:"nums"`
	Grid     [][]float64       `json:"grid"`
	When     time.Time         `json:"when"`
	Opt      *string           `json:"opt"`
	Attrs    map[string]string `json:"attrs"`
	Any      any               `json:"any"`
	Raw      json.RawMessage   `json:"raw"`
	Bytes    []byte            `json:"bytes"`
	Fixed    [2]int            `json:"fixed"`
	ÜberName string            `json:"überName"`
	private  string
}

type Embeds struct {
	Inner
	X int
}

type Quoted struct {
	N int `json:",string"`
}

// Clash has two fields named X: encoding/json lets the tagged one win.
type Clash struct {
	A string `json:"X"`
	X string
}

type Folded struct {
	Kelvin string `json:"k"`
	Name   string `json:"name"`
	NAME   string
}

var types = []reflect.Type{
	reflect.TypeFor[Event](), reflect.TypeFor[Inner](), reflect.TypeFor[Folded](),
	reflect.TypeFor[Embeds](), reflect.TypeFor[Quoted](), reflect.TypeFor[Clash](),
}

// compare decodes data with the plan (when the type has one) and with
// encoding/json, and fails when they disagree.
func compare(t *testing.T, typ reflect.Type, data []byte) {
	t.Helper()
	want := reflect.New(typ)
	wantErr := json.Unmarshal(data, want.Interface())
	got := reflect.New(typ)
	var gotErr error
	if p := For(typ); p != nil {
		gotErr = p.Decode(data, got.Elem())
	} else {
		gotErr = json.Unmarshal(data, got.Interface())
	}
	if (gotErr == nil) != (wantErr == nil) {
		t.Fatalf("%v %q: fastjson error %v, encoding/json error %v", typ, data, gotErr, wantErr)
	}
	if wantErr == nil && !reflect.DeepEqual(got.Interface(), want.Interface()) {
		t.Fatalf("%v %q:\nfastjson      %#v\nencoding/json %#v", typ, data, got.Elem().Interface(), want.Elem().Interface())
	}
}

var seeds = []string{
	`{}`, `null`, ` { } `, `[]`, `"x"`, `12`, `{"id":"a","amount":-12,"small":127,"count":4000000000,"ratio":1.5e3,"half":0.25,"ok":true}`,
	`{"small":128}`, `{"small":-129}`, `{"count":-1}`, `{"amount":1.0}`, `{"amount":1e2}`, `{"amount":"1"}`, `{"ok":1}`,
	`{"half":1e39}`, `{"ratio":1e400}`, `{"id":null,"amount":null,"home":null,"nums":null,"opt":null,"attrs":null}`,
	`{"nums":[]}`, `{"nums":[1,2,null,3]}`, `{"nums":[1,"x"]}`, `{"grid":[[1.5],[],[2,3]]}`,
	`{"home":{"street":"a","no":7,"tags":["x","y"]},"homes":[{"street":"b"},{"no":1}]}`,
	`{"home":{"street":"a"},"home":{"no":2}}`, `{"id":"a","id":"b"}`, `{"ID":"upper","Amount":3,"NOTE":"n","note":"m"}`,
	`{"id":"\u00e9\ud83d\ude00\ud800x\udc00\\\"\/\b\f\n\r\t"}`, `{"id":"\xff\xfe"}`, `{"\u0069d":"escaped key"}`,
	`{"when":"2026-01-02T03:04:05Z","opt":"o","attrs":{"a":"b"},"any":[1,{"x":null}],"raw":{"k":[1]},"bytes":"aGk=","fixed":[1,2,3]}`,
	`{"when":"not a time"}`, `{"bytes":"%%%"}`, `{"überName":"ü","ÜBERNAME":"Ü"}`, `{"-":"dash","Skipped":"no","Bad":"b","a\\b":"x"}`,
	`{"k":"kelvin","K":"k2","\u212a":"kelvin sign"}`, `{"id":"a",}`, `{"id" "a"}`, `{"id":"a"} x`, `{"id":tru}`, `{"id":"\x01"}`,
	`{"amount":01}`, `{"amount":-}`, `{"amount":1.}`, `{"amount":.5}`, `{"amount":1e}`, `{"x":[1,]}`, `{"x":{"a":}}`, `{"unknown":{"deep":[1,2,{"a":null}]}}`,
	`{"Inner":{"street":"s"},"street":"t","X":1}`, `{"N":"12"}`, `{"N":12}`, `{"X":"one"}`, `{"x":"one"}`, `{"name":"a","NAME":"b","Name":"c"}`,
	`{"homes":[{"street":1}]}`, `{"nums":[1e2]}`, "{\"id\":\"a\"}\n", `{"id":"\u12"}`, `{"id":"\q"}`,
}

func TestMatchesEncodingJSON(t *testing.T) {
	for _, typ := range types {
		for _, s := range seeds {
			compare(t, typ, []byte(s))
		}
	}
}

func TestPlansAreLeftToEncodingJSONWhenRulesAreSubtle(t *testing.T) {
	for typ, want := range map[reflect.Type]bool{
		reflect.TypeFor[Event]():     true,
		reflect.TypeFor[Embeds]():    false, // embedding
		reflect.TypeFor[Quoted]():    false, // ,string
		reflect.TypeFor[Clash]():     false, // two fields named x
		reflect.TypeFor[time.Time](): false,
	} {
		if got := For(typ) != nil; got != want {
			t.Errorf("For(%v) has a plan: %v, want %v", typ, got, want)
		}
	}
}

func FuzzMatchesEncodingJSON(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, typ := range types {
			compare(t, typ, data)
		}
	})
}

var benchPayload = []byte(`{"amount":1250,"currency":"EUR","note":"monthly savings transfer"}`)

type deposited struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Note     string `json:"note"`
}

func BenchmarkDecode(b *testing.B) {
	b.Run("baseline", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var e deposited
			if err := json.Unmarshal(benchPayload, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fastjson", func(b *testing.B) {
		b.ReportAllocs()
		p := For(reflect.TypeFor[deposited]())
		for i := 0; i < b.N; i++ {
			var e deposited
			if err := p.Decode(benchPayload, reflect.ValueOf(&e).Elem()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// splitObject splits a JSON object into its top-level fields, in order.
func splitObject(t *testing.T, data string) []Field {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("%s: not an object", data)
	}
	var fs []Field
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			t.Fatal(err)
		}
		fs = append(fs, Field{Key: []byte(tok.(string)), Raw: raw})
	}
	return fs
}

// DecodeFields remembers the last key order it saw; objects of other
// shapes — the same keys in another order, other keys of the same count,
// case-folded and unknown keys — must decode as Decode does, however they
// alternate.
func TestDecodeFieldsMatchesDecodeAcrossShapes(t *testing.T) {
	objects := []string{
		`{"id":"a","amount":1,"ok":true}`,
		`{"ok":false,"id":"b","amount":2}`,
		`{"id":"c","amount":3,"unknown":true}`,
		`{"ID":"d","AMOUNT":4,"ok":true}`,
		`{"id":"e","amount":5,"ok":true,"note":"n"}`,
		`{"id":"f"}`,
		`{"id":"g","id":"h","amount":6}`,
	}
	p := For(reflect.TypeFor[Event]())
	for round := 0; round < 40; round++ {
		for i := range objects {
			data := objects[(i*(round+1))%len(objects)] // varying sequences
			want := reflect.New(reflect.TypeFor[Event]())
			if err := p.Decode([]byte(data), want.Elem()); err != nil {
				t.Fatal(err)
			}
			got := reflect.New(reflect.TypeFor[Event]())
			if err := p.DecodeFields(got.Elem(), splitObject(t, data)); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Interface(), want.Interface()) {
				t.Fatalf("round %d, %s: DecodeFields = %+v, Decode = %+v", round, data, got.Elem(), want.Elem())
			}
		}
	}
}
