package fastjson

import (
	"encoding/binary"
	"encoding/json"
	"reflect"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

type decoder struct {
	data []byte
	pos  int
	buf  []byte // scratch for unescaping
	// view: string values of the top-level fields viewFields that start
	// with it and need no unescaping are set as views into data instead of
	// copies (see UnmarshalViews).
	view       string
	viewFields []int
}

func (d *decoder) viewable(f *fieldPlan, depth int, b []byte) bool {
	if d.view == "" || depth != 2 || len(b) <= len(d.view) || string(b[:len(d.view)]) != d.view || !d.inData(b) {
		return false
	}
	for _, i := range d.viewFields {
		if i == f.index {
			return true
		}
	}
	return false
}

const maxDepth = 10000 // encoding/json's nesting limit

func (d *decoder) space() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *decoder) peek() byte {
	if d.pos < len(d.data) {
		return d.data[d.pos]
	}
	return 0
}

// document decodes a whole input: an object or null, then nothing else.
func (d *decoder) document(sp *structPlan, v reflect.Value) error {
	d.space()
	switch d.peek() {
	case '{':
		if err := d.object(sp, v, 1); err != nil {
			return err
		}
	case 'n':
		if err := d.literal("null"); err != nil {
			return err
		}
	default:
		// Another JSON type into a struct: a type error if the value is
		// valid, a syntax error otherwise.
		if err := d.skip(1); err != nil {
			return err
		}
		d.space()
		if d.pos != len(d.data) {
			return errSynt
		}
		return errType
	}
	d.space()
	if d.pos != len(d.data) {
		return errSynt
	}
	return nil
}

func (d *decoder) literal(word string) error {
	if len(d.data)-d.pos < len(word) || string(d.data[d.pos:d.pos+len(word)]) != word {
		return errSynt
	}
	d.pos += len(word)
	return nil
}

func (d *decoder) object(sp *structPlan, v reflect.Value, depth int) error {
	if depth > maxDepth {
		return errSynt
	}
	d.pos++ // '{'
	d.space()
	if d.peek() == '}' {
		d.pos++
		return nil
	}
	for {
		d.space()
		if d.peek() != '"' {
			return errSynt
		}
		key, err := d.strBytes()
		if err != nil {
			return err
		}
		f := sp.field(key)
		d.space()
		if d.peek() != ':' {
			return errSynt
		}
		d.pos++
		d.space()
		if f == nil {
			if err := d.skip(depth + 1); err != nil {
				return err
			}
		} else if err := d.value(f, v.Field(f.index), depth+1); err != nil {
			return err
		}
		d.space()
		switch d.peek() {
		case ',':
			d.pos++
		case '}':
			d.pos++
			return nil
		default:
			return errSynt
		}
	}
}

// value decodes one JSON value into fv according to f.
func (d *decoder) value(f *fieldPlan, fv reflect.Value, depth int) error {
	c := d.peek()
	if c == 'n' {
		if err := d.literal("null"); err != nil {
			return err
		}
		switch f.kind {
		case kSlice:
			fv.SetZero()
		case kFallback:
			return json.Unmarshal([]byte("null"), fv.Addr().Interface())
		}
		return nil // null leaves strings, numbers, bools and structs alone
	}
	switch f.kind {
	case kString:
		if c != '"' {
			return d.mismatch(depth)
		}
		b, err := d.strBytes()
		if err != nil {
			return err
		}
		if d.viewable(f, depth, b) {
			fv.SetString(unsafe.String(&b[0], len(b)))
		} else {
			fv.SetString(string(b))
		}
	case kBool:
		switch c {
		case 't':
			if err := d.literal("true"); err != nil {
				return err
			}
			fv.SetBool(true)
		case 'f':
			if err := d.literal("false"); err != nil {
				return err
			}
			fv.SetBool(false)
		default:
			return d.mismatch(depth)
		}
	case kInt, kUint, kFloat:
		if c != '-' && (c < '0' || c > '9') {
			return d.mismatch(depth)
		}
		num, err := d.number()
		if err != nil {
			return err
		}
		switch f.kind {
		case kInt:
			n, err := strconv.ParseInt(num, 10, f.bits)
			if err != nil {
				return errType
			}
			fv.SetInt(n)
		case kUint:
			n, err := strconv.ParseUint(num, 10, f.bits)
			if err != nil {
				return errType
			}
			fv.SetUint(n)
		default:
			n, err := strconv.ParseFloat(num, f.bits)
			if err != nil {
				return errType
			}
			fv.SetFloat(n)
		}
	case kStruct:
		if c != '{' {
			return d.mismatch(depth)
		}
		return d.object(f.sub, fv, depth)
	case kSlice:
		if c != '[' {
			return d.mismatch(depth)
		}
		return d.slice(f, fv, depth)
	case kFallback:
		start := d.pos
		if err := d.skip(depth); err != nil {
			return err
		}
		if err := json.Unmarshal(d.data[start:d.pos], fv.Addr().Interface()); err != nil {
			return errType // the value is valid JSON: a type error
		}
	}
	return nil
}

// mismatch skips a value of the wrong JSON type: a type error if it is
// valid, a syntax error otherwise (encoding/json checks syntax first).
func (d *decoder) mismatch(depth int) error {
	if err := d.skip(depth); err != nil {
		return err
	}
	return errType
}

func (d *decoder) slice(f *fieldPlan, fv reflect.Value, depth int) error {
	if depth > maxDepth {
		return errSynt
	}
	d.pos++ // '['
	out := reflect.MakeSlice(f.typ, 0, 4)
	d.space()
	if d.peek() == ']' {
		d.pos++
		fv.Set(out)
		return nil
	}
	for {
		d.space()
		out = reflect.Append(out, reflect.Zero(f.elem.typ))
		if err := d.value(f.elem, out.Index(out.Len()-1), depth+1); err != nil {
			return err
		}
		d.space()
		switch d.peek() {
		case ',':
			d.pos++
		case ']':
			d.pos++
			fv.Set(out)
			return nil
		default:
			return errSynt
		}
	}
}

// number reads a JSON number token, checking its grammar.
func (d *decoder) number() (string, error) {
	start := d.pos
	i := d.pos
	n := d.data
	if i < len(n) && n[i] == '-' {
		i++
	}
	digits := func() int {
		s := i
		for i < len(n) && n[i] >= '0' && n[i] <= '9' {
			i++
		}
		return i - s
	}
	switch {
	case i < len(n) && n[i] == '0':
		i++
	case digits() == 0:
		return "", errSynt
	}
	if i < len(n) && n[i] == '.' {
		i++
		if digits() == 0 {
			return "", errSynt
		}
	}
	if i < len(n) && (n[i] == 'e' || n[i] == 'E') {
		i++
		if i < len(n) && (n[i] == '+' || n[i] == '-') {
			i++
		}
		if digits() == 0 {
			return "", errSynt
		}
	}
	d.pos = i
	return string(n[start:i]), nil
}

// str reads a JSON string at d.pos and returns it unescaped, with invalid
// UTF-8 and lone surrogates replaced by U+FFFD, as encoding/json does.
func (d *decoder) str() (string, error) {
	b, err := d.strBytes()
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// inData reports whether b is a slice of the input (not of d.buf).
func (d *decoder) inData(b []byte) bool {
	if len(d.data) == 0 || len(b) == 0 {
		return false
	}
	start := uintptr(unsafe.Pointer(&d.data[0]))
	p := uintptr(unsafe.Pointer(&b[0]))
	return p >= start && p+uintptr(len(b)) <= start+uintptr(len(d.data))
}

// strBytes reads a string and returns its unescaped bytes: a slice of the
// input or of d.buf, valid until the next call.
func (d *decoder) strBytes() ([]byte, error) {
	d.pos++ // '"'
	start := d.pos
	// Fast path: printable ASCII without escapes, eight bytes at a time
	// while no byte is a quote, a backslash, a control byte or non-ASCII
	// (exact SWAR tests: a zero byte of x^'"…' or x^'\\…', a byte below
	// 0x20, a high bit), then byte by byte.
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for d.pos+8 <= len(d.data) {
		x := binary.LittleEndian.Uint64(d.data[d.pos:])
		q, b := x^(0x22*ones), x^(0x5c*ones)
		if ((q-ones)&^q|(b-ones)&^b|(x-0x20*ones)&^x|x)&highs != 0 {
			break
		}
		d.pos += 8
	}
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		if c == '"' {
			s := d.data[start:d.pos]
			d.pos++
			return s, nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		d.pos++
	}
	b := append(d.buf[:0], d.data[start:d.pos]...)
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			d.buf = b
			return b, nil
		case c < 0x20:
			return nil, errSynt
		case c == '\\':
			if d.pos+1 >= len(d.data) {
				return nil, errSynt
			}
			e := d.data[d.pos+1]
			d.pos += 2
			switch e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, ok := d.hex4()
				if !ok {
					return nil, errSynt
				}
				if utf16.IsSurrogate(r) {
					// A pair only if the next escape completes it.
					save := d.pos
					if d.pos+1 < len(d.data) && d.data[d.pos] == '\\' && d.data[d.pos+1] == 'u' {
						d.pos += 2
						r2, ok2 := d.hex4()
						if ok2 {
							if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
								b = utf8.AppendRune(b, dec)
								continue
							}
						}
						d.pos = save
					}
					r = utf8.RuneError
				}
				b = utf8.AppendRune(b, r)
			default:
				return nil, errSynt
			}
		case c < utf8.RuneSelf:
			b = append(b, c)
			d.pos++
		default:
			r, size := utf8.DecodeRune(d.data[d.pos:])
			if r == utf8.RuneError && size == 1 {
				b = utf8.AppendRune(b, utf8.RuneError)
			} else {
				b = append(b, d.data[d.pos:d.pos+size]...)
			}
			d.pos += size
		}
	}
	return nil, errSynt
}

func (d *decoder) hex4() (rune, bool) {
	if d.pos+4 > len(d.data) {
		return 0, false
	}
	var r rune
	for _, c := range d.data[d.pos : d.pos+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r*16 + rune(c)
	}
	d.pos += 4
	return r, true
}

// skip passes over one JSON value, checking its syntax.
func (d *decoder) skip(depth int) error {
	if depth > maxDepth {
		return errSynt
	}
	switch c := d.peek(); {
	case c == '"':
		_, err := d.str()
		return err
	case c == '{' || c == '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		d.pos++
		d.space()
		if d.peek() == closer {
			d.pos++
			return nil
		}
		for {
			d.space()
			if c == '{' {
				if d.peek() != '"' {
					return errSynt
				}
				if _, err := d.str(); err != nil {
					return err
				}
				d.space()
				if d.peek() != ':' {
					return errSynt
				}
				d.pos++
				d.space()
			}
			if err := d.skip(depth + 1); err != nil {
				return err
			}
			d.space()
			switch d.peek() {
			case ',':
				d.pos++
			case closer:
				d.pos++
				return nil
			default:
				return errSynt
			}
		}
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		_, err := d.number()
		return err
	default:
		return errSynt
	}
}
