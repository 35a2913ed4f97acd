package natsrelay

import (
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fluxcapacitor/flux"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of every relayed message. Values are the stored ones; NATS trims
// the spaces around a header value and turns CR and LF inside it into
// spaces. A header whose value would be empty (an unset ID) is left out.
const (
	// HeaderMsgID is the event ID; JetStream drops a message whose ID it
	// has stored within the stream's duplicate window.
	HeaderMsgID = jetstream.MsgIDHeader // "Nats-Msg-Id"
	// HeaderEventName and HeaderEventVersion are the event name and schema
	// version the payload was stored with (before any upcasting).
	HeaderEventName    = "Flux-Event-Name"
	HeaderEventVersion = "Flux-Event-Version"
	// HeaderAggregateType, HeaderStreamID and HeaderStreamVersion place the
	// event in its aggregate's stream.
	HeaderAggregateType = "Flux-Aggregate-Type"
	HeaderStreamID      = "Flux-Stream-Id"
	HeaderStreamVersion = "Flux-Stream-Version"
	// HeaderPosition is the event's position in the global log.
	HeaderPosition = "Flux-Position"
	// HeaderOccurredAt is when the event was saved, UTC, RFC 3339 with
	// nanoseconds (time.RFC3339Nano).
	HeaderOccurredAt = "Flux-Occurred-At"
	// HeaderRequestID, HeaderCorrelationID and HeaderCausationID carry the
	// event's flux.Metadata IDs.
	HeaderRequestID     = "Flux-Request-Id"
	HeaderCorrelationID = "Flux-Correlation-Id"
	HeaderCausationID   = "Flux-Causation-Id"
	// HeaderMetadataPrefix prefixes each key of flux.Metadata.Extra (see
	// MetadataHeader), so application keys never collide with the headers
	// above or with NATS's own.
	HeaderMetadataPrefix = "Flux-Meta-"
)

// DefaultSubjectPrefix is the subject prefix when Config.SubjectPrefix is
// empty.
const DefaultSubjectPrefix = "flux"

// Token maps an aggregate type or event name to one NATS subject token:
// every character a token may not hold — '.', '*', '>', white space
// (unicode.IsSpace) and control characters (unicode.IsControl) — and
// every byte of invalid UTF-8 becomes '_'; an empty name becomes "_".
// Everything else, letters of any script included, is kept as is.
//
// The mapping is not reversible ("a.b" and "a_b" share a token); the exact
// names travel in the HeaderAggregateType and HeaderEventName headers.
func Token(name string) string {
	if name == "" {
		return "_"
	}
	i := 0
	for i < len(name) {
		size, bad := tokenRuneAt(name, i)
		if bad {
			break
		}
		i += size
	}
	if i == len(name) {
		return name
	}
	var b strings.Builder
	b.Grow(len(name))
	b.WriteString(name[:i])
	for i < len(name) {
		size, bad := tokenRuneAt(name, i)
		if bad {
			b.WriteByte('_')
		} else {
			b.WriteString(name[i : i+size])
		}
		i += size
	}
	return b.String()
}

// tokenRuneAt decodes the rune at name[i:] and reports whether a subject
// token may not hold it. A byte of invalid UTF-8 counts as one bad rune.
func tokenRuneAt(name string, i int) (size int, bad bool) {
	r, size := utf8.DecodeRuneInString(name[i:])
	return size, (r == utf8.RuneError && size == 1) || badTokenRune(r)
}

func badTokenRune(r rune) bool {
	return r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r)
}

// Subject returns the subject an event is relayed on:
// prefix.Token(aggregateType).Token(eventName). The event name is the one
// stored with the event (before upcasting), like its payload. A consumer
// selects one aggregate type with prefix.Token(aggregateType).>.
func Subject(prefix, aggregateType, eventName string) string {
	return prefix + "." + Token(aggregateType) + "." + Token(eventName)
}

// MetadataHeader returns the header that carries the flux.Metadata.Extra
// key: HeaderMetadataPrefix followed by the key, in which every byte a NATS
// header name may not hold (anything but printable ASCII, and the
// characters "(),/:;<=>?@[\]{}) and '%' itself are written as %XX
// (upper-case hex). "traceparent" travels as "Flux-Meta-traceparent".
// Header names are case-sensitive in NATS.
func MetadataHeader(key string) string {
	if key == "" {
		return HeaderMetadataPrefix + "%"
	}
	var b strings.Builder
	b.Grow(len(HeaderMetadataPrefix) + len(key))
	b.WriteString(HeaderMetadataPrefix)
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c <= ' ' || c >= 0x7f || c == '%' || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// message builds the NATS message for one stored event: its payload as
// stored (personal data still encrypted) and the headers documented above.
func message(prefix string, rec *flux.Record) *nats.Msg {
	h := make(nats.Header, 11+len(rec.Metadata.Extra))
	set := func(k, v string) {
		if v != "" {
			h[k] = []string{v}
		}
	}
	set(HeaderMsgID, rec.EventID)
	set(HeaderEventName, rec.EventName)
	set(HeaderEventVersion, strconv.Itoa(rec.EventVersion))
	set(HeaderAggregateType, rec.AggregateType)
	set(HeaderStreamID, rec.StreamID)
	set(HeaderStreamVersion, strconv.FormatInt(rec.StreamVersion, 10))
	set(HeaderPosition, strconv.FormatInt(rec.Position, 10))
	set(HeaderOccurredAt, rec.OccurredAt.UTC().Format(time.RFC3339Nano))
	set(HeaderRequestID, rec.Metadata.RequestID)
	set(HeaderCorrelationID, rec.Metadata.CorrelationID)
	set(HeaderCausationID, rec.Metadata.CausationID)
	for k, v := range rec.Metadata.Extra {
		h[MetadataHeader(k)] = []string{v}
	}
	return &nats.Msg{Subject: Subject(prefix, rec.AggregateType, rec.EventName), Data: rec.Payload, Header: h}
}

// validPrefix reports what is wrong with a subject prefix, or "".
func validPrefix(p string) string {
	if !utf8.ValidString(p) {
		return "is not valid UTF-8"
	}
	for i, tok := range strings.Split(p, ".") {
		if tok == "" {
			return "has an empty token (leading, trailing or double '.')"
		}
		if i == 0 && strings.HasPrefix(tok, "$") {
			return "starts with '$', which NATS reserves for system subjects ($JS, $SYS, $KV)"
		}
		for _, r := range tok {
			if badTokenRune(r) {
				return "token " + strconv.Itoa(i+1) + " " + strconv.Quote(tok) + " holds " + strconv.QuoteRune(r) + ", which a subject prefix may not (no wildcards, white space or control characters)"
			}
		}
	}
	return ""
}

// covers reports whether every subject matched by filter is also matched by
// pattern (NATS wildcards '*' and '>' allowed in both).
func covers(pattern, filter string) bool {
	p, f := strings.Split(pattern, "."), strings.Split(filter, ".")
	for i, pt := range p {
		if pt == ">" {
			return i < len(f)
		}
		if i >= len(f) {
			return false
		}
		switch ft := f[i]; {
		case ft == ">":
			return false
		case pt == "*":
		case ft == "*" || pt != ft:
			return false
		}
	}
	return len(p) == len(f)
}
