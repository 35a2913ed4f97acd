// Package uuid generates and checks RFC 9562 UUIDs with the standard library
// only. Version 7 (time-ordered) is the default for event IDs: it keeps
// B-tree indexes on event_id append-mostly. Backends use Format to render
// the event IDs their database stores as 16 bytes.
package uuid

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"sync"
	"time"
)

// Generator produces version 7 UUIDs that are strictly increasing within one
// process even when the clock stands still or steps back. It is safe for
// concurrent use. The zero value is ready to use.
type Generator struct {
	mu     sync.Mutex
	lastMS int64
	seq    uint16 // 12-bit counter (rand_a) for ids within one millisecond
}

// New returns a new version 7 UUID in its canonical 36-character form.
func (g *Generator) New() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand.Read never returns an error on supported platforms
		// (Go 1.24+ panics internally instead), so this is unreachable.
		panic("uuid: crypto/rand failed: " + err.Error())
	}
	ms := time.Now().UnixMilli()
	g.mu.Lock()
	if ms <= g.lastMS {
		ms = g.lastMS
		g.seq++
		if g.seq > 0x0fff { // counter exhausted: borrow the next millisecond
			ms++
			g.seq = 0
		}
	} else {
		g.seq = binary.BigEndian.Uint16(b[6:8]) & 0x01ff // random start, room to count
	}
	g.lastMS = ms
	seq := g.seq
	g.mu.Unlock()

	b[0] = byte(ms >> 40)
	b[1] = byte(ms >> 32)
	b[2] = byte(ms >> 24)
	b[3] = byte(ms >> 16)
	b[4] = byte(ms >> 8)
	b[5] = byte(ms)
	b[6] = 0x70 | byte(seq>>8)&0x0f
	b[7] = byte(seq)
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	return Format(b)
}

// NewRandom returns a version 4 (random) UUID.
func NewRandom() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("uuid: crypto/rand failed: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return Format(b)
}

// Format renders 16 bytes in the canonical 8-4-4-4-12 form.
func Format(b [16]byte) string {
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// Valid reports whether s is a UUID in canonical form (any version).
func Valid(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
