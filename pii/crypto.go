package pii

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"unsafe"
)

// MinSecretLength is the shortest key-encryption secret accepted. Use 32
// random bytes (for example `openssl rand -base64 32`): the secret is
// expanded with HKDF, which does not slow down guessing a weak one.
const MinSecretLength = 16

// kek is the key-encryption key derived from the configured secret.
type kek struct {
	aead cipher.AEAD
	id   string // short fingerprint stored with wrapped keys
}

func newKEK(secret []byte) (*kek, error) {
	if len(secret) < MinSecretLength {
		return nil, fmt.Errorf("pii: the key-encryption secret is %d bytes, want at least %d (32 random bytes recommended)", len(secret), MinSecretLength)
	}
	key, err := hkdf.Key(sha256.New, secret, []byte("fluxcapacitor/pii/kek/v1"), "key-encryption-key", 32)
	if err != nil {
		return nil, fmt.Errorf("pii: derive key-encryption key: %w", err)
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("fluxcapacitor/pii/kek-id"))
	return &kek{aead: aead, id: hex.EncodeToString(mac.Sum(nil)[:4])}, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("pii: %w", err)
	}
	return cipher.NewGCM(block) // 96-bit nonces, 128-bit tags
}

const wrappedPrefix = "v1:"

func keyAAD(subject string) []byte { return []byte("fluxcapacitor/pii/key/v1\x00" + subject) }

// wrap seals a data key for subject: "v1:<kek id>:<base64(nonce|ciphertext)>".
func (k *kek) wrap(subject string, dataKey []byte) (string, error) {
	sealed, err := seal(k.aead, dataKey, keyAAD(subject))
	if err != nil {
		return "", err
	}
	return wrappedPrefix + k.id + ":" + base64.RawStdEncoding.EncodeToString(sealed), nil
}

// unwrap opens a wrapped data key of subject.
func (k *kek) unwrap(subject, wrapped string) ([]byte, error) {
	rest, ok := strings.CutPrefix(wrapped, wrappedPrefix)
	id, b64, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return nil, fmt.Errorf("%w: stored key of subject %q is not in the v1 format", ErrBadEnvelope, subject)
	}
	if id != k.id {
		return nil, fmt.Errorf("%w: the key of subject %q was wrapped by secret %s, the configured secret is %s; set KEY_MANAGEMENT_SECRET to the secret the keys were created with",
			ErrWrongSecret, subject, id, k.id)
	}
	sealed, err := base64.RawStdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("%w: stored key of subject %q: %v", ErrBadEnvelope, subject, err)
	}
	key, err := open(k.aead, sealed, keyAAD(subject))
	if err != nil {
		return nil, fmt.Errorf("%w: stored key of subject %q", ErrTampered, subject)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("%w: stored key of subject %q has %d bytes", ErrBadEnvelope, subject, len(key))
	}
	return key, nil
}

func seal(aead cipher.AEAD, plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("pii: nonce: %w", err)
	}
	return aead.Seal(out, out, plaintext, aad), nil
}

// open decrypts sealed (nonce | ciphertext | tag) in place: the plaintext
// reuses sealed's storage.
func open(aead cipher.AEAD, sealed, aad []byte) ([]byte, error) {
	n := aead.NonceSize()
	if len(sealed) < n+aead.Overhead() {
		return nil, ErrTampered
	}
	return aead.Open(sealed[n:n], sealed[:n], sealed[n:], aad)
}

// EnvelopePrefix starts every encrypted value as stored: the JSON string
// "fluxpii:v1:<base64url(nonce | ciphertext | tag)>" replaces the value.
const EnvelopePrefix = "fluxpii:v1:"

// ParseEnvelope reports whether raw (a JSON value) is an encrypted value,
// and returns its sealed bytes. A value with the prefix but a malformed
// body is an ErrBadEnvelope error.
func ParseEnvelope(raw []byte) (sealed []byte, ok bool, err error) {
	sealed, _, ok, err = appendEnvelope(nil, raw)
	return sealed, ok, err
}

// appendEnvelope is ParseEnvelope decoding into buf's spare capacity; rest
// is buf grown by the sealed bytes, for the next envelope.
func appendEnvelope(buf, raw []byte) (sealed, rest []byte, ok bool, err error) {
	const quoted = `"` + EnvelopePrefix
	if len(raw) < len(quoted)+1 || string(raw[:len(quoted)]) != quoted || raw[len(raw)-1] != '"' {
		return nil, buf, false, nil
	}
	sealed, rest, err = appendEnvelopeBody(buf, raw[len(quoted):len(raw)-1])
	return sealed, rest, true, err
}

// readOnlyBytes views s as bytes without copying; the result must not be
// modified.
func readOnlyBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// appendEnvelopeBody decodes the base64 body of an envelope (after the
// prefix) into buf's spare capacity.
func appendEnvelopeBody(buf, body []byte) (sealed, rest []byte, err error) {
	need := base64.RawURLEncoding.DecodedLen(len(body))
	if cap(buf)-len(buf) < need {
		buf = make([]byte, 0, max(need, 2*cap(buf)))
	}
	rest = buf[:len(buf)+need]
	sealed = rest[len(buf):len(rest):len(rest)]
	n, err := base64.RawURLEncoding.Decode(sealed, body)
	if err != nil {
		return nil, buf, fmt.Errorf("%w: %v", ErrBadEnvelope, err)
	}
	if n < 12+16 {
		return nil, buf, fmt.Errorf("%w: %d bytes is shorter than a nonce and a tag", ErrBadEnvelope, n)
	}
	return sealed[:n], rest, nil
}

func formatEnvelope(sealed []byte) []byte {
	out := make([]byte, 0, len(EnvelopePrefix)+base64.RawURLEncoding.EncodedLen(len(sealed))+2)
	out = append(out, '"')
	out = append(out, EnvelopePrefix...)
	out = base64.RawURLEncoding.AppendEncode(out, sealed)
	return append(out, '"')
}

// appendValueAAD binds a ciphertext to its subject, where it was written
// (event or snapshot) and its field.
func appendValueAAD(b []byte, subject, scope, field string) []byte {
	b = append(b, "fluxcapacitor/pii/value/v1\x00"...)
	b = append(append(b, subject...), 0)
	b = append(append(b, scope...), 0)
	return append(b, field...)
}

func newDataKey() ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("pii: new data key: %w", err)
	}
	return key, nil
}
