package flux

import "fmt"

// jsonLimits checks what every backend can store of a valid JSON text b:
// nesting at most MaxJSONDepth arrays and objects deep, and no \u escape of
// a UTF-16 surrogate that is not part of a pair (RFC 8259 lets the grammar
// accept one, but it encodes no character: MariaDB's and MySQL's JSON
// columns refuse it, and PostgreSQL's jsonb cannot hold it). It returns ""
// or what is wrong, for an error message.
func jsonLimits(b []byte) string {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '[', '{':
			depth++
			if depth > MaxJSONDepth {
				return fmt.Sprintf("nests arrays and objects deeper than %d levels (flux.MaxJSONDepth)", MaxJSONDepth)
			}
		case ']', '}':
			depth--
		case '"':
			end, problem := stringLimits(b, i+1)
			if problem != "" {
				return problem
			}
			i = end
		}
	}
	return ""
}

// stringLimits scans the JSON string whose content starts at b[i] and
// returns the index of its closing quote, or a problem.
func stringLimits(b []byte, i int) (int, string) {
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			return i, ""
		case '\\':
			i++
			if i >= len(b) || b[i] != 'u' {
				continue // a one-letter escape; json.Valid checked it
			}
			r, ok := hex4(b, i+1)
			if !ok {
				continue
			}
			i += 4
			switch {
			case r >= 0xDC00 && r <= 0xDFFF:
				return i, fmt.Sprintf("holds the escape \\u%04X, a low surrogate without a high one before it; encode the character itself or a valid pair", r)
			case r >= 0xD800 && r <= 0xDBFF:
				if i+6 < len(b) && b[i+1] == '\\' && b[i+2] == 'u' {
					if lo, ok := hex4(b, i+3); ok && lo >= 0xDC00 && lo <= 0xDFFF {
						i += 6
						continue
					}
				}
				return i, fmt.Sprintf("holds the escape \\u%04X, a high surrogate without a low one after it; encode the character itself or a valid pair", r)
			}
		}
	}
	return i, ""
}

// hex4 decodes the four hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
