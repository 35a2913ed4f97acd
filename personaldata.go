package flux

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/fluxcapacitor/flux/uuid"
)

// ErrSubjectForgotten is matched by errors about a data subject that was
// forgotten (package pii: pii.ErrForgotten matches it): saving new personal
// data of that subject is refused. Loads of a forgotten subject's data do
// not fail; they read replacement values and report the fields in
// Envelope.Forgotten / LoadInfo.Forgotten.
var ErrSubjectForgotten = errors.New("flux: data subject was forgotten")

// The global-log record of a forgotten subject.
const (
	// PersonalDataAggregate is the aggregate type of the streams that
	// carry SubjectForgotten records. Every Registry knows it.
	PersonalDataAggregate = "flux.PersonalData"
	// SubjectForgottenEvent is the stored name of SubjectForgotten.
	SubjectForgottenEvent = "flux.SubjectForgotten"
)

// SubjectForgotten is appended to the global log when a data subject is
// forgotten (pii.Protector.Forget, `flux forget`), after the subject's key
// was deleted. It is how read models learn of it: a projection built with
// projection.Forgetting() receives it (whatever its other filters) and
// erases or anonymises its rows of the subject; the NATS relay forwards it
// like any event. It carries the subject ID (never personal data itself,
// like every subject ID) and the free-text who and why of the request.
//
// Its stream is ForgottenStreamID(subject), of aggregate type
// PersonalDataAggregate; each subject has at most one such record.
type SubjectForgotten struct {
	Subject string `json:"subject"`
	By      string `json:"by,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// ForgottenStreamID returns the ID of the stream holding the
// SubjectForgotten record of subject: "flux-forgotten-" and the subject,
// or a SHA-256 prefix of it when the subject is too long for a stream ID
// or contains characters a stream ID cannot hold.
func ForgottenStreamID(subject string) string {
	const prefix = "flux-forgotten-"
	id := prefix + subject
	if ValidateStreamID(id) == nil {
		return id
	}
	sum := sha256.Sum256([]byte(subject))
	return prefix + "sha256-" + hex.EncodeToString(sum[:20])
}

// personalDataStream is the aggregate behind PersonalDataAggregate; the
// registry needs a Go type for it.
type personalDataStream struct{ Root }

func (*personalDataStream) Apply(any) {}

// personalDataDefinition is registered in every Registry.
func personalDataDefinition() Definition {
	return AggregateType(PersonalDataAggregate, func() *personalDataStream { return new(personalDataStream) },
		EventType[SubjectForgotten](SubjectForgottenEvent, 1))
}

// IsSubjectForgotten reports whether rec is a SubjectForgotten record.
func IsSubjectForgotten(rec *Record) bool {
	return rec.EventName == SubjectForgottenEvent && rec.AggregateType == PersonalDataAggregate
}

// checkSnapshotPersonalData enforces that an aggregate whose events carry
// personal data cannot snapshot it in clear: the snapshot state type must
// tag every field that holds it (so the protector encrypts it), or the
// policy must say NoPersonalData. It returns nil when the aggregate's
// events carry no personal data.
func checkSnapshotPersonalData(def *aggregateDef, state reflect.Type) error {
	if def.snapshot == nil || def.snapshot.NoPersonalData {
		return nil
	}
	var eventFields []piiField
	for _, e := range def.events {
		if e.hasPII {
			eventFields = append(eventFields, personalFields(e.typ, e.name)...)
		}
	}
	if len(eventFields) == 0 {
		return nil
	}
	const fix = "tag the state field `pii:\"data\"` (the state also needs a `pii:\"subject\"` field or a PersonalDataSubject method), " +
		"or, if the state really holds no personal data, declare it with flux.Snapshots(flux.SnapshotPolicy{NoPersonalData: true})"
	if state == nil {
		return fmt.Errorf("flux: aggregate %q: its events carry personal data (event %s field %s) but SnapshotState of a new aggregate returns nil, "+
			"so its snapshot state cannot be checked; return a typed value, or %s", def.name, eventFields[0].event, eventFields[0].path, fix)
	}
	clear := plainFields(state)
	for _, ef := range eventFields {
		for _, sf := range clear {
			if sameFieldName(sf.leaf, ef.leaf) {
				return fmt.Errorf("flux: aggregate %q: snapshot state %v field %s is not marked as personal data, but event %s field %s is (pii:\"data\"): "+
					"its value would be stored in clear in every snapshot and survive Forget; %s", def.name, state, sf.path, ef.event, ef.path, fix)
			}
		}
	}
	if !HasPersonalData(state) {
		return fmt.Errorf("flux: aggregate %q: its events carry personal data (event %s field %s) but its snapshot state %v has no field marked pii:\"data\": "+
			"whatever it keeps of that data would be stored in clear; %s", def.name, eventFields[0].event, eventFields[0].path, state, fix)
	}
	return nil
}

// piiField is a field found by personalFields or plainFields.
type piiField struct {
	event string // event name (personalFields only)
	path  string // JSON path, "address.street"
	leaf  string // last key of the path
}

// personalFields lists the fields of t tagged pii:"data".
func personalFields(t reflect.Type, event string) []piiField {
	var out []piiField
	walkFields(t, "", false, map[reflect.Type]bool{}, func(path, leaf string, marked bool) {
		if marked {
			out = append(out, piiField{event: event, path: path, leaf: leaf})
		}
	})
	return out
}

// plainFields lists the leaf fields of t that no pii:"data" tag covers
// (neither their own nor an enclosing field's).
func plainFields(t reflect.Type) []piiField {
	var out []piiField
	walkFields(t, "", false, map[reflect.Type]bool{}, func(path, leaf string, marked bool) {
		if !marked {
			out = append(out, piiField{path: path, leaf: leaf})
		}
	})
	return out
}

// walkFields calls fn for every exported field of struct type t (through
// pointers, slices, arrays and map values), depth first, with whether a
// pii:"data" tag covers it. A marked field is reported and not descended.
func walkFields(t reflect.Type, prefix string, marked bool, seen map[reflect.Type]bool, fn func(path, leaf string, marked bool)) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return
	}
	seen[t] = true
	defer delete(seen, t)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" && f.Tag.Get("json") == "-" {
			continue
		}
		mark, _, _ := strings.Cut(f.Tag.Get(PersonalDataTag), ",")
		if f.Anonymous && name == "" {
			walkFields(f.Type, prefix, marked || mark == "data", seen, fn)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		leafMarked := marked || mark == "data"
		inner := f.Type
		for inner.Kind() == reflect.Pointer || inner.Kind() == reflect.Slice || inner.Kind() == reflect.Array || inner.Kind() == reflect.Map {
			inner = inner.Elem()
		}
		if inner.Kind() == reflect.Struct && !leafMarked && inner.NumField() > 0 && !isOpaqueStruct(inner) {
			walkFields(inner, path, false, seen, fn)
			continue
		}
		if mark == "subject" {
			continue
		}
		fn(path, name, leafMarked)
	}
}

// isOpaqueStruct reports struct types that encode as one value (time.Time
// and other JSON or text marshalers).
func isOpaqueStruct(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return pt.Implements(reflect.TypeFor[interface{ MarshalJSON() ([]byte, error) }]()) ||
		pt.Implements(reflect.TypeFor[interface{ MarshalText() ([]byte, error) }]())
}

// sameFieldName compares field names the way a reader would: ignoring
// case, '_' and '-' ("first_name" is "FirstName").
func sameFieldName(a, b string) bool {
	norm := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '_' || r == '-' {
				return -1
			}
			return r
		}, strings.ToLower(s))
	}
	return norm(a) == norm(b)
}

// snapshotChecks caches checkSnapshotPersonalData per (aggregate, state
// type) for the save path, which sees the state's dynamic type.
var snapshotChecks sync.Map // snapshotCheckKey -> error

type snapshotCheckKey struct {
	def   *aggregateDef
	state reflect.Type
}

func checkSnapshotStateCached(def *aggregateDef, state reflect.Type) error {
	k := snapshotCheckKey{def, state}
	if v, ok := snapshotChecks.Load(k); ok {
		if v == nil {
			return nil
		}
		return v.(error)
	}
	err := checkSnapshotPersonalData(def, state)
	if err == nil {
		snapshotChecks.Store(k, nil)
	} else {
		snapshotChecks.Store(k, err)
	}
	return err
}

// SignalForgotten appends the SubjectForgotten record of ev.Subject to the
// global log of es (stream ForgottenStreamID, expected NoStream), stamped
// with the metadata ctx carries. It returns the record's global position;
// already is true (position 0) when the subject's record was written
// before — each subject is signalled once, so re-running an interrupted
// forget completes it without a second record. The record's correlation
// ID is ctx's, or its own event ID (so `flux trace` finds it).
// pii.Protector.Forget calls it after the subject's key is deleted.
func SignalForgotten(ctx context.Context, es EventStore, ev SubjectForgotten, at time.Time) (position int64, already bool, err error) {
	if ev.Subject == "" {
		return 0, false, fmt.Errorf("%w: signal forgotten: the subject is empty", ErrPersonalData)
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		return 0, false, err
	}
	md := MetadataFrom(ctx)
	if md.RequestID == "" {
		md.RequestID = DefaultRequestID
	}
	id := uuid.NewRandom()
	if md.CorrelationID == "" { // a forget outside a command, as the bus does
		md.CorrelationID = md.RequestID
		if md.CorrelationID == DefaultRequestID {
			md.CorrelationID = id
		}
	}
	res, err := es.Append(ctx, AppendRequest{Streams: []StreamAppend{{
		StreamID: ForgottenStreamID(ev.Subject), AggregateType: PersonalDataAggregate, Expected: NoStream,
		Events: []EventData{{EventID: id, EventName: SubjectForgottenEvent, EventVersion: 1, Payload: payload, Metadata: md, OccurredAt: at}},
	}}})
	if errors.Is(err, ErrConcurrencyConflict) {
		return 0, true, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("flux: signal that subject %q was forgotten (stream %s): %w; run the forget again to retry", ev.Subject, ForgottenStreamID(ev.Subject), err)
	}
	return res.Positions[0], false, nil
}
