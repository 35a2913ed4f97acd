package pii

import (
	"container/list"
	"context"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/internal/fastjson"
)

// SecretEnv is the environment variable holding the key-encryption
// secret, named as in the PHP library.
const SecretEnv = "KEY_MANAGEMENT_SECRET"

// SecretFromEnv reads the key-encryption secret from KEY_MANAGEMENT_SECRET.
func SecretFromEnv() ([]byte, error) {
	s := os.Getenv(SecretEnv)
	if s == "" {
		return nil, fmt.Errorf("pii: %s is not set; it holds the secret that wraps every data key", SecretEnv)
	}
	return []byte(s), nil
}

// Config configures a Protector. Keys and Secret are required.
type Config struct {
	// Keys stores the wrapped data keys: the event store's database
	// (sqlitestore, pgstore, mysqlstore, memstore all implement KeyStore).
	Keys KeyStore
	// Secret derives the key-encryption key that wraps every data key
	// (KEY_MANAGEMENT_SECRET). At least MinSecretLength bytes.
	Secret []byte
	// Replacement is what a string field of a forgotten subject reads as,
	// unless the field's tag names its own (`pii:"data,replace=unknown"`).
	// Fields of other kinds read as their zero value (0, false, the zero
	// time, nil slices and maps, zero structs) or their tag's replace=
	// value. Default "".
	Replacement string
	// AllowUnencrypted lets a `pii:"data"` field hold a stored value that is
	// not a ciphertext (it loads as it is). Off by default: such a value
	// fails the load with ErrNotEncrypted, since it was written around the
	// framework or before the field was marked, and nothing protects it.
	// Turn it on only while migrating such events, then re-encrypt them.
	AllowUnencrypted bool
	// CacheSize bounds the number of unwrapped data keys kept in memory.
	// Default 10,000.
	CacheSize int
	// CacheTTL is how long a cached key is trusted before it is read
	// again: the longest time a Forget by another process may go unnoticed
	// here (a Forget through this Protector takes effect at once).
	// Default 1 minute.
	CacheTTL time.Duration
	// Clock stamps key creation and forgetting. Default time.Now.
	Clock func() time.Time
	// Logger receives diagnostics (never values). Default: discard.
	Logger *slog.Logger
}

// Protector implements flux.DataProtector: it encrypts fields tagged
// `pii:"data"` with AES-256-GCM under a data key per subject, and forgets a
// subject by deleting its key. It is safe for concurrent use.
type Protector struct {
	cfg Config
	kek *kek

	mu       sync.Mutex
	cache    map[string]*list.Element // subject -> *cacheEntry
	lru      *list.List
	inflight map[string]*keyCall

	stats struct {
		keyReads, keyCreates, cacheHits, encrypted, decrypted, forgottenReads, failures atomic.Int64
	}
}

var _ flux.DataProtector = (*Protector)(nil)

type cacheEntry struct {
	subject   string
	aead      cipher.AEAD // nil when forgotten or missing
	forgotten bool        // tombstoned: permanent
	missing   bool        // no key and no tombstone: never cached
	at        time.Time
}

type keyCall struct {
	done  chan struct{}
	entry *cacheEntry
	err   error
}

// New returns a Protector.
func New(cfg Config) (*Protector, error) {
	var errs []error
	if cfg.Keys == nil {
		errs = append(errs, errors.New("pii: Config.Keys is nil; pass the event store (it implements pii.KeyStore)"))
	}
	k, err := newKEK(cfg.Secret)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 10_000
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Protector{cfg: cfg, kek: k, cache: map[string]*list.Element{}, lru: list.New(), inflight: map[string]*keyCall{}}, nil
}

// Stats counts what a Protector did since it was created.
type Stats struct {
	// KeyReads and KeyCreates count key-store round trips.
	KeyReads, KeyCreates int64
	// CacheHits counts data-key lookups served from memory.
	CacheHits int64
	// Encrypted and Decrypted count field values.
	Encrypted, Decrypted int64
	// ForgottenReads counts field values read as replacements.
	ForgottenReads int64
	// Failures counts values that failed to decrypt (tampered, wrong secret).
	Failures int64
}

// Stats returns the counters.
func (p *Protector) Stats() Stats {
	return Stats{
		KeyReads: p.stats.keyReads.Load(), KeyCreates: p.stats.keyCreates.Load(), CacheHits: p.stats.cacheHits.Load(),
		Encrypted: p.stats.encrypted.Load(), Decrypted: p.stats.decrypted.Load(),
		ForgottenReads: p.stats.forgottenReads.Load(), Failures: p.stats.failures.Load(),
	}
}

// Protect implements flux.DataProtector.
func (p *Protector) Protect(ctx context.Context, v any, data []byte, scope string) ([]byte, error) {
	if v == nil {
		return data, nil
	}
	pl := planFor(reflect.TypeOf(v))
	if pl.err != nil {
		return nil, pl.err
	}
	if len(pl.fields) == 0 {
		return data, nil
	}
	subject := pl.subjectOf(reflect.ValueOf(v))
	if subject == "" {
		return nil, &FieldError{Type: pl.typeName, Err: fmt.Errorf("%w: add a pii:\"subject\" field or a PersonalDataSubject() method, and set it", ErrNoSubject)}
	}
	entry, err := p.key(ctx, subject, true)
	if err != nil {
		return nil, &FieldError{Type: pl.typeName, Subject: subject, Err: err}
	}
	if entry.forgotten {
		return nil, &FieldError{Type: pl.typeName, Subject: subject, Err: fmt.Errorf("%w: refusing to store new personal data of a forgotten subject", ErrForgotten)}
	}
	obj, err := flux.ParsePayload(data)
	if err != nil {
		return nil, &FieldError{Type: pl.typeName, Err: fmt.Errorf("%w: %v", ErrUnsupportedField, err)}
	}
	for _, f := range pl.fields {
		err := transformField(obj, f.path, "", func(field string, raw []byte) ([]byte, error) {
			if isNull(raw) {
				return raw, nil
			}
			sealed, err := seal(entry.aead, raw, appendValueAAD(nil, subject, scope, field))
			if err != nil {
				return nil, err
			}
			p.stats.encrypted.Add(1)
			return formatEnvelope(sealed), nil
		})
		if err != nil {
			return nil, &FieldError{Type: pl.typeName, Field: f.name(), Subject: subject, Err: err}
		}
	}
	return obj.Bytes(), nil
}

// Unprotect implements flux.DataProtector.
func (p *Protector) Unprotect(ctx context.Context, data []byte, target any, scope string) ([]string, error) {
	tv := reflect.ValueOf(target)
	if tv.Kind() != reflect.Pointer || tv.IsNil() {
		return nil, fmt.Errorf("%w: pii: decode target %T is not a non-nil pointer", flux.ErrPersonalData, target)
	}
	pl := planFor(tv.Type())
	if pl.err != nil {
		return nil, pl.err
	}
	if len(pl.fields) == 0 {
		return nil, fastjson.Unmarshal(data, target)
	}
	if pl.direct {
		if sv := tv.Elem().Field(pl.subjectIdx[0]); sv.String() == "" {
			return p.unprotectDirect(ctx, pl, data, tv, scope)
		}
	}
	obj, err := flux.AcquirePayload(data)
	if err != nil {
		return nil, err
	}
	defer flux.ReleasePayload(obj)
	subject, err := pl.subjectFromJSON(obj, target)
	if err != nil {
		return nil, err
	}
	var entry *cacheEntry
	var forgotten []string
	var aad []byte
	aadBase := -1
	// One buffer holds every ciphertext (decrypted in place) of the event.
	arena := make([]byte, 0, len(data))
	for _, f := range pl.fields {
		err := transformField(obj, f.path, "", func(field string, raw []byte) ([]byte, error) {
			sealed, rest, ok, err := appendEnvelope(arena, raw)
			if err != nil {
				return raw, err
			}
			if !ok {
				if isNull(raw) || string(raw) == `""` || p.cfg.AllowUnencrypted {
					return raw, nil // nothing to protect, or allowed while migrating
				}
				return nil, fmt.Errorf("%w: re-encrypt the event, or set pii.Config.AllowUnencrypted while migrating", ErrNotEncrypted)
			}
			arena = rest
			if subject == "" {
				return nil, fmt.Errorf("%w: the value is encrypted but the subject is empty", ErrNoSubject)
			}
			if entry == nil {
				if entry, err = p.key(ctx, subject, false); err != nil {
					return nil, err
				}
			}
			if entry.missing {
				return nil, missingKey(subject)
			}
			if entry.forgotten {
				p.stats.forgottenReads.Add(1)
				forgotten = append(forgotten, field)
				switch {
				case f.replace != nil:
					return f.replace, nil
				case f.isString:
					return json.Marshal(p.cfg.Replacement)
				}
				return []byte("null"), nil
			}
			if aadBase < 0 { // once per event: the field varies
				aad = appendValueAAD(make([]byte, 0, 64+len(subject)+len(scope)), subject, scope, "")
				aadBase = len(aad)
			}
			aad = append(aad[:aadBase], field...)
			plain, err := open(entry.aead, sealed, aad)
			if err != nil {
				p.stats.failures.Add(1)
				return nil, fmt.Errorf("%w: it was modified or copied from another subject, event or field", ErrTampered)
			}
			p.stats.decrypted.Add(1)
			return plain, nil
		})
		if err != nil {
			if !errors.Is(err, ErrTampered) {
				p.stats.failures.Add(1)
			}
			return nil, &FieldError{Type: pl.typeName, Field: f.name(), Subject: subject, Err: err}
		}
	}
	bp := plainPool.Get().(*[]byte)
	*bp = obj.AppendJSON((*bp)[:0])
	err = fastjson.Unmarshal(*bp, target) // copies what it keeps
	clear(*bp)                            // decrypted values do not linger in the pool
	if cap(*bp) <= 64<<10 {
		plainPool.Put(bp)
	}
	if err != nil {
		return nil, decodeError(pl, subject, err)
	}
	return forgotten, nil
}

// decodeError reports that decrypted data did not decode into the target
// without the decoder's message, which can quote the value ("trying to
// unmarshal \"ada@example.com\" into int"): only the field, the JSON kind
// and the Go type are kept.
func decodeError(pl *plan, subject string, err error) error {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		return &FieldError{Type: pl.typeName, Field: ute.Field, Subject: subject,
			Err: fmt.Errorf("%w: a JSON %s does not decode into %v", ErrUndecodable, ute.Value, ute.Type)}
	}
	return &FieldError{Type: pl.typeName, Subject: subject,
		Err: fmt.Errorf("%w: the decoder's message is withheld, since it may quote personal data; check that the type's fields match the stored event (an upcaster may be missing)", ErrUndecodable)}
}

// unprotectDirect is Unprotect for plans whose personal fields are all
// top-level strings (pl.direct) into a target whose subject field is
// empty: it decodes the stored object as it is — each envelope lands in its
// string field — then decrypts the fields in place. Same results and
// errors as the general path, without re-encoding the object.
func (p *Protector) unprotectDirect(ctx context.Context, pl *plan, data []byte, tv reflect.Value, scope string) ([]string, error) {
	// Envelopes are decoded as views into data (no copies): each is
	// replaced below — decrypted, forgotten, or scrubbed on error.
	if err := fastjson.UnmarshalViews(data, tv.Interface(), EnvelopePrefix, pl.directFields); err != nil {
		scrubFields(pl, tv.Elem())
		return nil, err
	}
	v := tv.Elem()
	subject := v.Field(pl.subjectIdx[0]).String()
	sc := scratchPool.Get().(*scratch)
	defer sc.release()
	var entry *cacheEntry
	var forgotten []string
	var texts []byte // backs every decrypted string of the event: one allocation
	aadBase := -1
	for i := range pl.fields {
		f := &pl.fields[i]
		fv := v.Field(f.index[0])
		field := f.path[0]
		scrub := func() { scrubFields(pl, v) }
		fail := func(err error) error {
			if !errors.Is(err, ErrTampered) {
				p.stats.failures.Add(1)
			}
			scrub()
			return &FieldError{Type: pl.typeName, Field: field, Subject: subject, Err: err}
		}
		body, ok := strings.CutPrefix(fv.String(), EnvelopePrefix)
		if !ok {
			if fv.String() == "" || p.cfg.AllowUnencrypted {
				continue // nothing to protect, or allowed while migrating
			}
			return nil, fail(fmt.Errorf("%w: re-encrypt the event, or set pii.Config.AllowUnencrypted while migrating", ErrNotEncrypted))
		}
		sealed, rest, err := appendEnvelopeBody(sc.arena, readOnlyBytes(body))
		if err != nil {
			return nil, fail(err)
		}
		sc.arena = rest
		if subject == "" {
			return nil, fail(fmt.Errorf("%w: the value is encrypted but the subject is empty", ErrNoSubject))
		}
		if entry == nil {
			if entry, err = p.key(ctx, subject, false); err != nil {
				return nil, fail(err)
			}
		}
		if entry.missing {
			return nil, fail(missingKey(subject))
		}
		if entry.forgotten {
			p.stats.forgottenReads.Add(1)
			forgotten = append(forgotten, field)
			if f.replace != nil {
				fv.SetString(f.replaceText)
			} else {
				fv.SetString(p.cfg.Replacement)
			}
			continue
		}
		if aadBase < 0 {
			sc.aad = appendValueAAD(sc.aad[:0], subject, scope, "")
			aadBase = len(sc.aad)
		}
		sc.aad = append(sc.aad[:aadBase], field...)
		plain, err := open(entry.aead, sealed, sc.aad)
		if err != nil {
			p.stats.failures.Add(1)
			return nil, fail(fmt.Errorf("%w: it was modified or copied from another subject, event or field", ErrTampered))
		}
		p.stats.decrypted.Add(1)
		// The plaintext is the value's JSON: a string.
		if !isPlainJSONString(plain) {
			var text string
			if err := json.Unmarshal(plain, &text); err != nil {
				scrub()
				return nil, fastjson.ErrType
			}
			fv.SetString(text)
			continue
		}
		if len(plain) == 2 {
			fv.SetString("")
			continue
		}
		if texts == nil {
			texts = make([]byte, 0, len(data)) // more than all plaintexts together
		}
		start := len(texts)
		texts = append(texts, plain[1:len(plain)-1]...)
		// texts is only ever appended to, so the bytes of this string
		// never change.
		fv.SetString(unsafe.String(&texts[start], len(texts)-start))
	}
	return forgotten, nil
}

// missingKey is the cause of a load whose data key is missing.
func missingKey(subject string) error {
	return fmt.Errorf("%w: restore the encryption_keys table from a backup, or forget subject %q to make its data read as forgotten", ErrKeyMissing, subject)
}

// scrubFields empties the personal fields of a direct plan's target, so it
// keeps no envelope (a view into the stored data) and no decrypted value.
func scrubFields(pl *plan, v reflect.Value) {
	for j := range pl.fields {
		v.Field(pl.fields[j].index[0]).SetString("")
	}
}

// scratch holds Unprotect's working buffers between calls; release clears
// them, so no ciphertext or plaintext lingers in the pool.
type scratch struct{ arena, aad []byte }

var scratchPool = sync.Pool{New: func() any { return &scratch{arena: make([]byte, 0, 1024), aad: make([]byte, 0, 128)} }}

func (s *scratch) release() {
	clear(s.arena)
	clear(s.aad)
	if cap(s.arena) > 64<<10 || cap(s.aad) > 4<<10 {
		return
	}
	s.arena, s.aad = s.arena[:0], s.aad[:0]
	scratchPool.Put(s)
}

// isPlainJSONString reports whether b is a JSON string without escapes
// (its bytes between the quotes are its value).
func isPlainJSONString(b []byte) bool {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return false
	}
	for _, c := range b[1 : len(b)-1] {
		if c == '\\' || c == '"' || c < 0x20 {
			return false
		}
	}
	return true
}

// plainPool holds the buffers decrypted events are decoded from.
var plainPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func isNull(raw []byte) bool { return string(raw) == "null" }

// plainString returns the value of a JSON string without escapes.
func plainString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	for _, c := range raw[1 : len(raw)-1] {
		if c == '\\' || c == '"' || c < 0x20 {
			return "", false
		}
	}
	return string(raw[1 : len(raw)-1]), true
}

// transformField applies fn to the value at path inside obj; field is the
// concrete path so far ("children[2].name"). Missing or null parents are
// left alone.
func transformField(obj *flux.Payload, path []string, field string, fn func(field string, raw []byte) ([]byte, error)) error {
	raw, ok := obj.Raw(path[0])
	if !ok {
		return nil
	}
	name := path[0]
	if field != "" {
		name = field + "." + path[0]
	}
	out, err := transformValue(raw, path[1:], name, fn)
	if err != nil {
		return err
	}
	obj.SetRaw(path[0], out)
	return nil
}

func transformValue(raw []byte, path []string, field string, fn func(string, []byte) ([]byte, error)) ([]byte, error) {
	if len(path) == 0 {
		return fn(field, raw)
	}
	if isNull(raw) {
		return raw, nil
	}
	if path[0] == "[]" {
		elems, err := flux.SplitArray(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %s is not an array: %v", ErrUnsupportedField, field, err)
		}
		out := make([]json.RawMessage, len(elems))
		for i, e := range elems {
			if out[i], err = transformValue(e, path[1:], field+"["+strconv.Itoa(i)+"]", fn); err != nil {
				return nil, err
			}
		}
		return flux.JoinArray(out), nil
	}
	inner, err := flux.ParsePayload(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not an object: %v", ErrUnsupportedField, field, err)
	}
	if err := transformField(inner, path, field, fn); err != nil {
		return nil, err
	}
	return inner.Bytes(), nil
}

// subjectOf reads the subject from a Go value.
func (pl *plan) subjectOf(v reflect.Value) string {
	if pl.method {
		if s, ok := v.Interface().(HasSubject); ok {
			return s.PersonalDataSubject()
		}
		if v.Kind() != reflect.Pointer {
			ptr := reflect.New(v.Type())
			ptr.Elem().Set(v)
			return ptr.Interface().(HasSubject).PersonalDataSubject()
		}
		return ""
	}
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return ""
		}
		v = v.Elem()
	}
	f, err := v.FieldByIndexErr(pl.subjectIdx)
	if err != nil || pl.subjectIdx == nil {
		return ""
	}
	return f.String()
}

// subjectFromJSON finds the subject of stored data: the subject field, or
// the PersonalDataSubject method of target decoded without its encrypted
// values.
func (pl *plan) subjectFromJSON(obj *flux.Payload, target any) (string, error) {
	if pl.subjectKey != "" {
		raw, ok := obj.Raw(pl.subjectKey)
		if !ok || isNull(raw) {
			return "", nil
		}
		if plain, ok := plainString(raw); ok {
			return plain, nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", &FieldError{Type: pl.typeName, Field: pl.subjectKey, Err: fmt.Errorf("%w: the subject is not a string", ErrNoSubject)}
		}
		return s, nil
	}
	if !pl.method {
		return "", nil
	}
	if s := pl.subjectOf(reflect.ValueOf(target)); s != "" {
		return s, nil // already known (an aggregate restoring its snapshot)
	}
	stripped, err := flux.ParsePayload(obj.Bytes())
	if err != nil {
		return "", err
	}
	for _, f := range pl.fields {
		_ = transformField(stripped, f.path, "", func(_ string, raw []byte) ([]byte, error) {
			if _, ok, _ := ParseEnvelope(raw); ok {
				return []byte("null"), nil
			}
			return raw, nil
		})
	}
	if err := json.Unmarshal(stripped.Bytes(), target); err != nil {
		return "", err
	}
	return pl.subjectOf(reflect.ValueOf(target)), nil
}

// key returns the subject's data key, from the cache or the store. With
// create, a subject without a key gets one. Concurrent lookups of one
// subject share one store round trip.
func (p *Protector) key(ctx context.Context, subject string, create bool) (*cacheEntry, error) {
	now := p.cfg.Clock()
	p.mu.Lock()
	if el, ok := p.cache[subject]; ok {
		e := el.Value.(*cacheEntry)
		if e.forgotten || now.Sub(e.at) < p.cfg.CacheTTL {
			if p.lru.Front() != el {
				p.lru.MoveToFront(el)
			}
			p.mu.Unlock()
			p.stats.cacheHits.Add(1)
			return e, nil
		}
	}
	if c, ok := p.inflight[subject]; ok {
		p.mu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if c.err != nil {
			return nil, c.err
		}
		if create && c.entry.missing {
			return p.key(ctx, subject, create) // that lookup found no key; create one
		}
		return c.entry, nil
	}
	c := &keyCall{done: make(chan struct{})}
	p.inflight[subject] = c
	p.mu.Unlock()

	c.entry, c.err = p.fetch(ctx, subject, create, now)
	p.mu.Lock()
	delete(p.inflight, subject)
	if c.err == nil && !c.entry.missing {
		p.put(c.entry)
	}
	p.mu.Unlock()
	close(c.done)
	return c.entry, c.err
}

func (p *Protector) fetch(ctx context.Context, subject string, create bool, now time.Time) (*cacheEntry, error) {
	p.stats.keyReads.Add(1)
	stored, err := p.cfg.Keys.LoadKey(ctx, subject)
	switch {
	case errors.Is(err, ErrForgotten):
		return &cacheEntry{subject: subject, forgotten: true, at: now}, nil
	case errors.Is(err, ErrKeyNotFound) && !create:
		// Encrypted data whose key is gone without a tombstone: a lost
		// key, not an erasure (readers fail with ErrKeyMissing). Not cached:
		// the key may be restored.
		p.cfg.Logger.LogAttrs(ctx, slog.LevelError, "pii: encrypted data of a subject without a data key or tombstone; restore the key store or forget the subject", slog.String("subject", subject))
		return &cacheEntry{subject: subject, missing: true, at: now}, nil
	case errors.Is(err, ErrKeyNotFound):
		dk, err := newDataKey()
		if err != nil {
			return nil, err
		}
		wrapped, err := p.kek.wrap(subject, dk)
		if err != nil {
			return nil, err
		}
		p.stats.keyCreates.Add(1)
		if stored, err = p.cfg.Keys.CreateKey(ctx, StoredKey{Subject: subject, Wrapped: wrapped, CreatedAt: now, UpdatedAt: now}); err != nil {
			if errors.Is(err, ErrForgotten) {
				return &cacheEntry{subject: subject, forgotten: true, at: now}, nil
			}
			return nil, fmt.Errorf("pii: create the data key of subject %q: %w", subject, err)
		}
	case err != nil:
		return nil, fmt.Errorf("pii: load the data key of subject %q: %w", subject, err)
	}
	dk, err := p.kek.unwrap(subject, stored.Wrapped)
	if err != nil {
		return nil, err
	}
	aead, err := newAEAD(dk)
	if err != nil {
		return nil, err
	}
	return &cacheEntry{subject: subject, aead: aead, at: now}, nil
}

// put caches e; the caller holds p.mu.
func (p *Protector) put(e *cacheEntry) {
	if el, ok := p.cache[e.subject]; ok {
		el.Value = e
		p.lru.MoveToFront(el)
		return
	}
	p.cache[e.subject] = p.lru.PushFront(e)
	for p.lru.Len() > p.cfg.CacheSize {
		old := p.lru.Back()
		p.lru.Remove(old)
		delete(p.cache, old.Value.(*cacheEntry).subject)
	}
}

// ForgetOptions records who asked to forget a subject and why.
type ForgetOptions struct {
	// By names who requested it: an operator, a service. Free text; do not
	// put personal data here.
	By string
	// Reason is free text, such as a ticket number.
	Reason string
}

// CheckType reports whether values of type t can be protected. Its error,
// a *FieldError matching flux.ErrPersonalData and ErrUnsupportedField or
// ErrNoSubject, names the first mark that cannot work (a marked map value,
// an unexported field, a non-string subject, an unknown tag) or a type with
// personal data but no subject. flux.NewRepository calls it for every
// registered event type, so such a mistake fails at start-up rather than
// at the first save.
func (p *Protector) CheckType(t reflect.Type) error {
	pl := planFor(t)
	if pl.err != nil {
		return pl.err
	}
	if len(pl.fields) > 0 && pl.subjectKey == "" && !pl.method {
		return &FieldError{Type: pl.typeName, Field: pl.fields[0].name(),
			Err: fmt.Errorf("%w: the type has personal data but neither a pii:\"subject\" field nor a PersonalDataSubject method", ErrNoSubject)}
	}
	return nil
}

// ForgetReport says what Forget did. It names the subject (an ID, never
// personal data) and no values.
type ForgetReport struct {
	Subject string
	// At is when the key was deleted (or the tombstone written).
	At time.Time
	// KeyDeleted: the subject had a data key and it is deleted now; every
	// copy of its personal data — in events, snapshots, the global log and
	// the command bus's idempotency records, all encrypted under that key —
	// reads as replacement values from now on. Snapshots are not deleted:
	// their personal fields are unreadable like the events'.
	KeyDeleted bool
	// AlreadyForgotten: the subject had been forgotten before; the first
	// forgetting record (who, when, why) is kept.
	AlreadyForgotten bool
	// NoPersonalData: the subject never had a key, so no personal data
	// was held for it; the tombstone now refuses new personal data.
	NoPersonalData bool
	// Signalled: the SubjectForgotten record is in the global log (at
	// SignalPosition, or earlier when SignalledBefore), so projections
	// built with projection.Forgetting() erase their rows of the subject.
	// False when the key store is not also the event store.
	Signalled       bool
	SignalPosition  int64
	SignalledBefore bool
}

// String is the human-readable report `flux forget` prints.
func (r ForgetReport) String() string {
	var b strings.Builder
	switch {
	case r.AlreadyForgotten:
		fmt.Fprintf(&b, "subject %q was already forgotten; no key was left to delete", r.Subject)
	case r.NoPersonalData:
		fmt.Fprintf(&b, "no personal data was held for %q; a tombstone now blocks new data", r.Subject)
	default:
		fmt.Fprintf(&b, "deleted the data key of %q: its personal data in events, snapshots and idempotency records now reads as replacement values", r.Subject)
	}
	switch {
	case r.Signalled && r.SignalledBefore:
		b.WriteString("; read models were already signalled (SubjectForgotten in the global log)")
	case r.Signalled:
		fmt.Fprintf(&b, "; read models signalled (SubjectForgotten at global position %d)", r.SignalPosition)
	default:
		b.WriteString("; no SubjectForgotten record was written (the key store is not an event store)")
	}
	return b.String()
}

// Forget deletes the subject's data key and records that it was forgotten
// (who and when). Afterwards the subject's personal data reads as
// replacement values everywhere — events, snapshots, the global log,
// idempotency records — and no new personal data can be stored for it. It
// cannot be undone.
//
// When the key store is also the event store (every backend of this
// repository is both), Forget then appends a SubjectForgotten record to the
// global log (flux.SignalForgotten), so read models learn of it. Forget is
// safe to repeat: an interrupted one completes when run again, and a
// subject is signalled once. The report says what was done.
func (p *Protector) Forget(ctx context.Context, subject string, opts ForgetOptions) (ForgetReport, error) {
	rep, err := ForgetSubject(ctx, p.cfg.Keys, subject, opts, p.cfg.Clock())
	if rep.At.IsZero() { // the key was not deleted
		return rep, err
	}
	p.mu.Lock()
	p.put(&cacheEntry{subject: subject, forgotten: true, at: rep.At})
	p.mu.Unlock()
	p.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "pii: subject forgotten", slog.String("subject", subject), slog.String("by", opts.By),
		slog.Bool("key_deleted", rep.KeyDeleted), slog.Bool("already_forgotten", rep.AlreadyForgotten), slog.Bool("signalled", rep.Signalled))
	return rep, err
}

// ForgetSubject is Forget without a Protector (no key-encryption secret is
// needed to delete a key): `flux forget` uses it. Protectors of other
// processes notice within their Config.CacheTTL.
func ForgetSubject(ctx context.Context, keys KeyStore, subject string, opts ForgetOptions, at time.Time) (ForgetReport, error) {
	rep := ForgetReport{Subject: subject}
	if subject == "" {
		return rep, fmt.Errorf("%w: pii: forget: subject is empty", flux.ErrPersonalData)
	}
	// What was there before: the store's ForgetSubject is idempotent and
	// says nothing, so look first. (Two Forget calls racing may both
	// report the key deleted.)
	if _, was, err := keys.Forgotten(ctx, subject); err != nil {
		return rep, fmt.Errorf("pii: forget subject %q: read its tombstone: %w", subject, err)
	} else if was {
		rep.AlreadyForgotten = true
	} else if _, err := keys.LoadKey(ctx, subject); errors.Is(err, ErrKeyNotFound) {
		rep.NoPersonalData = true
	} else if err != nil && !errors.Is(err, ErrForgotten) {
		return rep, fmt.Errorf("pii: forget subject %q: read its key: %w", subject, err)
	}
	if err := keys.ForgetSubject(ctx, Forgetting{Subject: subject, At: at, By: opts.By, Reason: opts.Reason}); err != nil {
		return rep, fmt.Errorf("pii: forget subject %q: %w", subject, err)
	}
	rep.At = at
	rep.KeyDeleted = !rep.AlreadyForgotten && !rep.NoPersonalData
	if log, ok := keys.(flux.EventStore); ok {
		pos, before, err := flux.SignalForgotten(ctx, log, flux.SubjectForgotten{Subject: subject, By: opts.By, Reason: opts.Reason}, at)
		if err != nil {
			return rep, fmt.Errorf("pii: subject %q is forgotten (its key is deleted), but %w", subject, err)
		}
		rep.Signalled, rep.SignalPosition, rep.SignalledBefore = true, pos, before
	}
	return rep, nil
}

// RotateSecret re-wraps every data key in keys from oldSecret to
// newSecret in one transaction; events and snapshots are not touched,
// since their data keys do not change. Run it, then restart the
// application with the new secret. It returns how many keys were
// re-wrapped; keys already wrapped by the new secret are left as they are.
func RotateSecret(ctx context.Context, keys KeyStore, oldSecret, newSecret []byte, now time.Time) (int, error) {
	from, err := newKEK(oldSecret)
	if err != nil {
		return 0, fmt.Errorf("pii: rotate: old secret: %w", err)
	}
	to, err := newKEK(newSecret)
	if err != nil {
		return 0, fmt.Errorf("pii: rotate: new secret: %w", err)
	}
	return keys.RewrapKeys(ctx, func(k StoredKey) (StoredKey, error) {
		if _, err := to.unwrap(k.Subject, k.Wrapped); err == nil {
			return k, nil
		}
		dk, err := from.unwrap(k.Subject, k.Wrapped)
		if err != nil {
			return k, err
		}
		if k.Wrapped, err = to.wrap(k.Subject, dk); err != nil {
			return k, err
		}
		k.UpdatedAt = now
		return k, nil
	})
}
