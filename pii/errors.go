package pii

import (
	"errors"
	"fmt"

	"github.com/fluxcapacitor/flux"
)

// Errors of personal-data protection. Every error this package returns for
// data (not configuration) also matches flux.ErrPersonalData.
var (
	// ErrWrongSecret: a data key was wrapped by another key-encryption
	// secret than the configured one. Set KEY_MANAGEMENT_SECRET to the
	// secret the keys were created with (or rotate from it).
	ErrWrongSecret = errors.New("pii: data key was wrapped with another secret")

	// ErrTampered: a ciphertext (or a wrapped key) does not authenticate —
	// it was modified, or copied from another subject, event or field.
	ErrTampered = errors.New("pii: ciphertext does not authenticate")

	// ErrNoSubject: a value has personal data but no data subject: add a
	// `pii:"subject"` string field or a PersonalDataSubject() method, and
	// make sure it is not empty.
	ErrNoSubject = errors.New("pii: personal data without a subject")

	// ErrUnsupportedField: a field is marked in a way that cannot be
	// protected (a kind JSON cannot encode, a field JSON does not store,
	// personal data inside map values, a non-string subject).
	ErrUnsupportedField = errors.New("pii: unsupported personal data field")

	// ErrBadEnvelope: a stored value looks like a ciphertext envelope but
	// is malformed.
	ErrBadEnvelope = errors.New("pii: malformed ciphertext envelope")

	// ErrKeyMissing: a value is encrypted, but its subject has neither a
	// data key nor a tombstone — the key store lost the key (a restore
	// from an older backup, a table emptied by hand). This is not erasure:
	// the load fails instead of reading replacement values. Restore the
	// encryption_keys table, or, if the subject really must be forgotten,
	// forget it (pii.Protector.Forget, `flux forget`), which leaves the
	// tombstone that makes its data read as forgotten.
	ErrKeyMissing = errors.New("pii: the data key is missing and the subject was not forgotten")

	// ErrNotEncrypted: a field marked `pii:"data"` holds a stored value that
	// is not a ciphertext — written around the framework, or by a version
	// from before the field was marked. The load fails rather than pass
	// clear text off as protected data. Re-encrypt the events, or set
	// Config.AllowUnencrypted while migrating.
	ErrNotEncrypted = errors.New("pii: a personal data field is stored in clear")

	// ErrUndecodable: data with personal fields was decrypted but does
	// not decode into the Go type (a field's type changed without an
	// upcaster). The decoder's own message is not passed on: it can quote
	// the decrypted value.
	ErrUndecodable = errors.New("pii: decrypted data does not decode into the type")
)

// FieldError names the field (as a JSON path such as "address.street" or
// "children[2].name"), the Go type and the subject a failure is about —
// never the value. It matches flux.ErrPersonalData and its cause.
type FieldError struct {
	Type    string
	Field   string
	Subject string
	Err     error
}

func (e *FieldError) Error() string {
	subject := ""
	if e.Subject != "" {
		subject = fmt.Sprintf(" of subject %q", e.Subject)
	}
	field := ""
	if e.Field != "" {
		field = " field " + e.Field
	}
	return fmt.Sprintf("pii: %s%s%s: %v", e.Type, field, subject, e.Err)
}

func (e *FieldError) Unwrap() error { return e.Err }

// Is makes every FieldError match flux.ErrPersonalData.
func (e *FieldError) Is(target error) bool { return target == flux.ErrPersonalData }

// Reason classifies the failure for metrics (flux.NoticePersonalData):
// "tampered", "wrong_secret", "forgotten", "no_subject",
// "unsupported_field", "bad_envelope", "key_missing", "not_encrypted", "undecodable" or
// "key_store".
func (e *FieldError) Reason() string {
	switch {
	case errors.Is(e.Err, ErrTampered):
		return "tampered"
	case errors.Is(e.Err, ErrWrongSecret):
		return "wrong_secret"
	case errors.Is(e.Err, ErrForgotten):
		return "forgotten"
	case errors.Is(e.Err, ErrNoSubject):
		return "no_subject"
	case errors.Is(e.Err, ErrUnsupportedField):
		return "unsupported_field"
	case errors.Is(e.Err, ErrBadEnvelope):
		return "bad_envelope"
	case errors.Is(e.Err, ErrKeyMissing):
		return "key_missing"
	case errors.Is(e.Err, ErrNotEncrypted):
		return "not_encrypted"
	case errors.Is(e.Err, ErrUndecodable):
		return "undecodable"
	default:
		return "key_store"
	}
}
