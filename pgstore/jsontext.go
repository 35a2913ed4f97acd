package pgstore

import (
	"bytes"
	"fmt"

	"github.com/fluxcapacitor/flux"
)

// PostgreSQL's jsonb stores strings as text, so it rejects two escapes that
// valid JSON may contain: \u0000 (text cannot hold NUL) and a UTF-16
// surrogate without its partner. Payloads and snapshot data holding either
// are stored twice: exactly, in a json column (which keeps the text as
// given), and with U+FFFD in place of each such escape in the jsonb column,
// so that they can still be queried. Reads prefer the exact copy.

// jsonbText returns the text to store in a jsonb column for the valid JSON
// document b and, when jsonb cannot hold b exactly, b itself for the json
// column (nil otherwise).
func jsonbText(b []byte) (jsonb string, exact *string) {
	if !needsReplacing(b) {
		return string(b), nil
	}
	s := string(b)
	return string(replaceUnstorable(b)), &s
}

// needsReplacing reports whether b holds an escape jsonb cannot store.
func needsReplacing(b []byte) bool {
	for i := bytes.IndexByte(b, '\\'); i >= 0 && i < len(b); {
		n, bad := escapeAt(b, i)
		if bad {
			return true
		}
		j := bytes.IndexByte(b[i+n:], '\\')
		if j < 0 {
			return false
		}
		i += n + j
	}
	return false
}

// replaceUnstorable returns a copy of b with each escape jsonb cannot store
// replaced by \ufffd.
func replaceUnstorable(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		if b[i] != '\\' {
			out = append(out, b[i])
			i++
			continue
		}
		n, bad := escapeAt(b, i)
		if bad {
			out = append(out, `\ufffd`...)
		} else {
			out = append(out, b[i:i+n]...)
		}
		i += n
	}
	return out
}

// escapeAt looks at the escape sequence starting with the backslash at
// b[i]: it returns its length (a surrogate pair counts as one) and whether
// jsonb cannot store it. Outside strings valid JSON has no backslash, so no
// string tracking is needed. Malformed input never panics: a truncated
// escape is reported as storable and left for the server to reject.
func escapeAt(b []byte, i int) (n int, bad bool) {
	if i+1 >= len(b) {
		return len(b) - i, false
	}
	if b[i+1] != 'u' {
		return 2, false
	}
	code, ok := hex4(b, i+2)
	if !ok {
		return 2, false
	}
	switch {
	case code == 0:
		return 6, true
	case code >= 0xD800 && code <= 0xDBFF: // high surrogate: needs a low one next
		if i+7 < len(b) && b[i+6] == '\\' && b[i+7] == 'u' {
			if low, ok := hex4(b, i+8); ok && low >= 0xDC00 && low <= 0xDFFF {
				return 12, false
			}
		}
		return 6, true
	case code >= 0xDC00 && code <= 0xDFFF: // low surrogate alone
		return 6, true
	}
	return 6, false
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	return r, true
}

// checkStorable rejects, before any I/O, what flux.ValidateAppend lets
// through but PostgreSQL text columns cannot hold: the NUL character in
// names, metadata and keys.
func checkStorable(req *flux.AppendRequest) error {
	if k := req.Idempotency; k != nil {
		if err := validateText("idempotency key", k.Key); err != nil {
			return err
		}
	}
	for i := range req.Snapshots {
		if err := validateText("aggregate type", req.Snapshots[i].AggregateType); err != nil {
			return fmt.Errorf("snapshot of stream %q: %w", req.Snapshots[i].StreamID, err)
		}
	}
	for i := range req.Streams {
		st := &req.Streams[i]
		if err := validateText("aggregate type", st.AggregateType); err != nil {
			return fmt.Errorf("stream %q: %w", st.StreamID, err)
		}
		for j := range st.Events {
			e := &st.Events[j]
			if err := validateText("event name", e.EventName); err != nil {
				return fmt.Errorf("stream %q event %d: %w", st.StreamID, j, err)
			}
			m := &e.Metadata
			for _, f := range [...]struct{ what, v string }{
				{"request ID", m.RequestID}, {"correlation ID", m.CorrelationID}, {"causation ID", m.CausationID},
			} {
				if err := validateText("metadata "+f.what, f.v); err != nil {
					return fmt.Errorf("stream %q event %s: %w", st.StreamID, e.EventName, err)
				}
			}
			for k, v := range m.Extra {
				if err := validateText("metadata key", k); err != nil {
					return fmt.Errorf("stream %q event %s: %w", st.StreamID, e.EventName, err)
				}
				if err := validateText("metadata "+k, v); err != nil {
					return fmt.Errorf("stream %q event %s: %w", st.StreamID, e.EventName, err)
				}
			}
		}
	}
	return nil
}

// errorf returns an error that wraps sentinel with a formatted explanation.
func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: pgstore: "+format, append([]any{sentinel}, args...)...)
}
