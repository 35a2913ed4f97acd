package flux

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"

	"github.com/fluxcapacitor/flux/internal/fastjson"
)

// Payload is a stored event's JSON object as an upcaster edits it: its
// top-level fields, each kept as raw JSON until it is read or replaced, so
// a chain of upcasters parses the payload once and encodes it once.
//
// Nested objects are edited by parsing them in turn:
//
//	addr, _ := p.Raw("address")
//	inner, err := flux.ParsePayload(addr)
//	inner.Rename("zip", "postalCode")
//	p.SetRaw("address", inner.Bytes())
type Payload struct {
	fields []payloadField
	buf    [8]payloadField // backs fields for small objects: one allocation
	// arena holds the keys and values Set and SetRaw add, so that an edit
	// does not allocate once a pooled Payload has warmed up. Slices into
	// it stay valid when it grows: they keep the old array.
	arena []byte
}

// maxPooledArena bounds the arena a pooled Payload keeps between uses.
const maxPooledArena = 16 << 10

// payloadField is one top-level field: its unescaped key (a sub-slice of
// the input when it had no escapes) and its raw value. It is the JSON
// decoder's field type, so an upcast payload decodes without conversion.
type payloadField = fastjson.Field

// ErrNotObject is returned by ParsePayload for JSON that is not an object.
var ErrNotObject = errors.New("flux: payload is not a JSON object")

// ParsePayload splits a JSON object into its top-level fields. It checks
// the object's structure, not every nested value (decoding does that).
func ParsePayload(data []byte) (*Payload, error) {
	p := new(Payload)
	if err := p.parse(data); err != nil {
		return nil, err
	}
	return p, nil
}

var payloadPool = sync.Pool{New: func() any { return new(Payload) }}

// AcquirePayload parses data into a pooled Payload. Release it when done:
// the hot read paths (upcasting, decryption) parse without allocating.
func AcquirePayload(data []byte) (*Payload, error) {
	p := payloadPool.Get().(*Payload)
	if err := p.parse(data); err != nil {
		ReleasePayload(p)
		return nil, err
	}
	return p, nil
}

// ReleasePayload returns p to the pool; p must not be used afterwards.
func ReleasePayload(p *Payload) {
	p.reset()
	payloadPool.Put(p)
}

// reset drops every reference so a pooled Payload retains no event data.
func (p *Payload) reset() {
	if len(p.fields) > 0 && cap(p.fields) == len(p.buf) && &p.fields[:1][0] == &p.buf[0] {
		clear(p.fields) // Delete clears what it vacates: the rest of buf is clear
	} else {
		clear(p.buf[:])
	}
	p.fields = nil
	if cap(p.arena) > maxPooledArena {
		p.arena = nil
	} else {
		clear(p.arena)
		p.arena = p.arena[:0]
	}
}

func (p *Payload) parse(data []byte) error {
	s := scanner{data: data}
	s.space()
	if !s.consume('{') {
		return ErrNotObject
	}
	p.fields = p.buf[:0]
	s.space()
	if s.consume('}') {
		return s.end()
	}
	for {
		s.space()
		key, err := s.key()
		if err != nil {
			return err
		}
		s.space()
		if !s.consume(':') {
			return s.errorf("want ':' after key")
		}
		s.space()
		start := s.pos
		if err := s.skipValue(0); err != nil {
			return err
		}
		p.fields = append(p.fields, payloadField{Key: key, Raw: data[start:s.pos:s.pos]})
		s.space()
		if s.consume(',') {
			continue
		}
		if s.consume('}') {
			return s.end()
		}
		return s.errorf("want ',' or '}'")
	}
}

func (p *Payload) index(key string) int {
	for i := range p.fields {
		if string(p.fields[i].Key) == key {
			return i
		}
	}
	return -1
}

// Has reports whether the field is present.
func (p *Payload) Has(key string) bool { return p.index(key) >= 0 }

// Keys returns the field names in order.
func (p *Payload) Keys() []string {
	keys := make([]string, len(p.fields))
	for i, f := range p.fields {
		keys[i] = string(f.Key)
	}
	return keys
}

// Raw returns the field's raw JSON value.
func (p *Payload) Raw(key string) (json.RawMessage, bool) {
	if i := p.index(key); i >= 0 {
		return p.fields[i].Raw, true
	}
	return nil, false
}

// Decode decodes the field into v. A missing field is an error.
func (p *Payload) Decode(key string, v any) error {
	raw, ok := p.Raw(key)
	if !ok {
		return fmt.Errorf("flux: payload has no field %q", key)
	}
	if sp, ok := v.(*string); ok && isPlainString(raw) {
		*sp = string(raw[1 : len(raw)-1])
		return nil
	}
	return json.Unmarshal(raw, v)
}

// StringValue returns the field's string value. A missing field, or one that
// is not a string, is an error. Upcasters reading strings should prefer it
// to Decode: it does not allocate beyond the string.
func (p *Payload) StringValue(key string) (string, error) {
	raw, ok := p.Raw(key)
	if !ok {
		return "", fmt.Errorf("flux: payload has no field %q", key)
	}
	if isPlainString(raw) {
		return string(raw[1 : len(raw)-1]), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("flux: payload field %q is not a string", key)
	}
	return s, nil
}

// isPlainString reports whether raw is a JSON string without escapes.
func isPlainString(raw []byte) bool {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return false
	}
	for _, c := range raw[1 : len(raw)-1] {
		if c == '\\' || c == '"' || c < 0x20 {
			return false
		}
	}
	return true
}

// Set encodes v as the field's value, adding the field if it is missing.
func (p *Payload) Set(key string, v any) error {
	if s, ok := v.(string); ok {
		p.SetString(key, s)
		return nil
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("flux: set payload field %q: %w", key, err)
	}
	p.SetRaw(key, raw)
	return nil
}

// SetString sets the field to the string s, adding the field if it is
// missing: Set for strings, without boxing s in an interface.
func (p *Payload) SetString(key, s string) {
	if !safeString(s) {
		raw, _ := json.Marshal(s) // strings always marshal
		p.setRaw(key, raw)
		return
	}
	start := len(p.arena)
	p.arena = append(append(append(p.arena, '"'), s...), '"')
	p.setRaw(key, p.arena[start:len(p.arena):len(p.arena)])
}

// safeString reports whether s encodes as itself between quotes, as
// encoding/json would write it (printable ASCII without " \\ < > &).
func safeString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// SetDefault sets the field to v only when it is missing (or null): the
// usual "v2 adds a field" upcast.
func (p *Payload) SetDefault(key string, v any) error {
	if raw, ok := p.Raw(key); ok && string(raw) != "null" {
		return nil
	}
	return p.Set(key, v)
}

// SetRaw sets the field to raw JSON, which must be valid. The Payload
// keeps raw as given: do not modify it afterwards.
func (p *Payload) SetRaw(key string, raw json.RawMessage) { p.setRaw(key, raw) }

func (p *Payload) setRaw(key string, raw []byte) {
	if i := p.index(key); i >= 0 {
		p.fields[i].Raw = raw
		return
	}
	start := len(p.arena)
	p.arena = append(p.arena, key...)
	p.fields = append(p.fields, payloadField{Key: p.arena[start:len(p.arena):len(p.arena)], Raw: raw})
}

// Delete removes the field if present.
func (p *Payload) Delete(key string) {
	if i := p.index(key); i >= 0 {
		n := len(p.fields)
		p.fields = append(p.fields[:i], p.fields[i+1:]...)
		p.fields[:n][n-1] = payloadField{} // no stale reference past the end
	}
}

// Rename renames a field, keeping its position; renaming onto an existing
// field replaces it. A missing field is left missing.
func (p *Payload) Rename(from, to string) {
	if p.index(from) < 0 || from == to {
		return
	}
	p.Delete(to)
	start := len(p.arena)
	p.arena = append(p.arena, to...)
	p.fields[p.index(from)].Key = p.arena[start:len(p.arena):len(p.arena)]
}

// Bytes encodes the object.
func (p *Payload) Bytes() []byte {
	n := 2
	for _, f := range p.fields {
		n += len(f.Key) + len(f.Raw) + 4
	}
	return p.appendTo(make([]byte, 0, n))
}

// AppendJSON appends the encoded object to b and returns the extended
// buffer, like Bytes without allocating when b has room.
func (p *Payload) AppendJSON(b []byte) []byte { return p.appendTo(b) }

// appendTo appends the encoded object to b.
func (p *Payload) appendTo(b []byte) []byte {
	b = append(b, '{')
	for i, f := range p.fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendKey(b, f.Key)
		b = append(b, ':')
		b = append(b, f.Raw...)
	}
	return append(b, '}')
}

func appendKey(b []byte, key []byte) []byte {
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			k, _ := json.Marshal(string(key)) // strings always marshal
			return append(b, k...)
		}
	}
	b = append(b, '"')
	b = append(b, key...)
	return append(b, '"')
}

// scanner walks JSON text just far enough to find value boundaries.
type scanner struct {
	data []byte
	pos  int
}

const maxPayloadDepth = 512

func (s *scanner) errorf(format string, args ...any) error {
	return fmt.Errorf("flux: payload JSON at offset %d: %s", s.pos, fmt.Sprintf(format, args...))
}

func (s *scanner) space() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *scanner) consume(c byte) bool {
	if s.pos < len(s.data) && s.data[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

func (s *scanner) end() error {
	s.space()
	if s.pos != len(s.data) {
		return s.errorf("unexpected data after the object")
	}
	return nil
}

// key reads an object key; escaped keys are decoded by encoding/json.
func (s *scanner) key() ([]byte, error) {
	start := s.pos
	escaped, err := s.skipString()
	if err != nil {
		return nil, err
	}
	raw := s.data[start:s.pos]
	if !escaped {
		return raw[1 : len(raw)-1 : len(raw)-1], nil
	}
	var k string
	if err := json.Unmarshal(raw, &k); err != nil {
		return nil, s.errorf("bad key: %v", err)
	}
	return []byte(k), nil
}

// skipString skips a string starting at s.pos and reports whether it had
// escapes.
func (s *scanner) skipString() (escaped bool, err error) {
	if !s.consume('"') {
		return false, s.errorf("want a string")
	}
	// Eight bytes at a time while there is no quote, backslash or control
	// byte (exact SWAR tests: a zero byte of x^'"…', x^'\\…', or a byte below
	// 0x20), then byte by byte.
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for s.pos+8 <= len(s.data) {
		x := binary.LittleEndian.Uint64(s.data[s.pos:])
		q, b := x^(0x22*ones), x^(0x5c*ones)
		if ((q-ones)&^q|(b-ones)&^b|(x-0x20*ones)&^x)&highs != 0 {
			break
		}
		s.pos += 8
	}
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return escaped, nil
		case c == '\\':
			escaped = true
			s.pos += 2
		case c < 0x20:
			return false, s.errorf("control character in string")
		default:
			s.pos++
		}
	}
	return false, s.errorf("unterminated string")
}

func (s *scanner) skipValue(depth int) error {
	if depth > maxPayloadDepth {
		return s.errorf("nested too deeply")
	}
	if s.pos >= len(s.data) {
		return s.errorf("want a value")
	}
	switch c := s.data[s.pos]; {
	case c == '"':
		_, err := s.skipString()
		return err
	case c == '{' || c == '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		s.pos++
		s.space()
		if s.consume(closer) {
			return nil
		}
		for {
			s.space()
			if c == '{' {
				if _, err := s.skipString(); err != nil {
					return err
				}
				s.space()
				if !s.consume(':') {
					return s.errorf("want ':'")
				}
				s.space()
			}
			if err := s.skipValue(depth + 1); err != nil {
				return err
			}
			s.space()
			if s.consume(',') {
				continue
			}
			if s.consume(closer) {
				return nil
			}
			return s.errorf("want ',' or '%c'", closer)
		}
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		start := s.pos
		for s.pos < len(s.data) && isNumberByte(s.data[s.pos]) {
			s.pos++
		}
		if !validNumber(s.data[start:s.pos]) {
			return s.errorf("bad number")
		}
		return nil
	default:
		return s.errorf("unexpected character %q", c)
	}
}

// validNumber checks JSON number syntax: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func validNumber(n []byte) bool {
	i := 0
	if i < len(n) && n[i] == '-' {
		i++
	}
	digits := func() int {
		start := i
		for i < len(n) && n[i] >= '0' && n[i] <= '9' {
			i++
		}
		return i - start
	}
	switch {
	case i < len(n) && n[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(n) && n[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(n) && (n[i] == 'e' || n[i] == 'E') {
		i++
		if i < len(n) && (n[i] == '+' || n[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(n)
}

func hasControl(b []byte) bool {
	// Eight bytes at a time: a byte below 0x20 borrows in x-0x20…20 and
	// keeps its high bit clear in x (exact for thresholds up to 0x80).
	for len(b) >= 8 {
		x := binary.LittleEndian.Uint64(b)
		if (x-0x2020202020202020)&^x&0x8080808080808080 != 0 {
			return true
		}
		b = b[8:]
	}
	for _, c := range b {
		if c < 0x20 {
			return true
		}
	}
	return false
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

func (s *scanner) literal(word string) error {
	if !bytes.HasPrefix(s.data[s.pos:], []byte(word)) {
		return s.errorf("want %s", word)
	}
	s.pos += len(word)
	return nil
}

// SplitArray splits a JSON array into its raw elements (sub-slices of
// data). It checks the array's structure, not every nested value.
func SplitArray(data []byte) ([]json.RawMessage, error) {
	s := scanner{data: data}
	s.space()
	if !s.consume('[') {
		return nil, s.errorf("want an array")
	}
	var out []json.RawMessage
	s.space()
	if s.consume(']') {
		return out, s.end()
	}
	for {
		s.space()
		start := s.pos
		if err := s.skipValue(0); err != nil {
			return nil, err
		}
		out = append(out, data[start:s.pos:s.pos])
		s.space()
		if s.consume(',') {
			continue
		}
		if s.consume(']') {
			return out, s.end()
		}
		return nil, s.errorf("want ',' or ']'")
	}
}

// JoinArray encodes raw elements as a JSON array.
func JoinArray(elems []json.RawMessage) []byte {
	n := 2
	for _, e := range elems {
		n += len(e) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, e := range elems {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e...)
	}
	return append(b, ']')
}
