package flux

import (
	"context"
	"maps"
	"net/http"
	"unicode"

	"github.com/fluxcapacitor/flux/uuid"
)

type ctxKey int

const metadataKey ctxKey = iota

// WithRequestID returns a context whose saves tag events with request ID id.
func WithRequestID(ctx context.Context, id string) context.Context {
	m := MetadataFrom(ctx)
	m.RequestID = id
	return context.WithValue(ctx, metadataKey, m)
}

// WithCorrelationID returns a context whose saves tag events with
// correlation ID id.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	m := MetadataFrom(ctx)
	m.CorrelationID = id
	return context.WithValue(ctx, metadataKey, m)
}

// WithCausationID returns a context whose saves tag events with causation
// ID id: the ID of the command or event that caused them.
func WithCausationID(ctx context.Context, id string) context.Context {
	m := MetadataFrom(ctx)
	m.CausationID = id
	return context.WithValue(ctx, metadataKey, m)
}

// WithMetadata returns a context whose saves add key=value to the events'
// Metadata.Extra. Metadata is stored in clear: never put personal data in it.
func WithMetadata(ctx context.Context, key, value string) context.Context {
	m := MetadataFrom(ctx)
	extra := make(map[string]string, len(m.Extra)+1)
	maps.Copy(extra, m.Extra)
	extra[key] = value
	m.Extra = extra
	return context.WithValue(ctx, metadataKey, m)
}

// MetadataFrom returns the metadata carried by ctx. Fields that were never
// set are empty; Extra must not be modified.
func MetadataFrom(ctx context.Context) Metadata {
	m, _ := ctx.Value(metadataKey).(Metadata)
	return m
}

// RequestIDHeader is the HTTP header RequestIDMiddleware reads and writes.
const RequestIDHeader = "X-Request-ID"

// RequestIDMiddleware puts the request's X-Request-ID into the request
// context, so every event saved while serving it carries that request ID.
// A missing or unusable header (longer than 128 bytes, or with control or
// non-ASCII characters) is replaced by a new UUID. The ID is echoed in the
// response header.
func RequestIDMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !usableRequestID(id) {
			id = uuid.NewRandom()
		}
		w.Header().Set(RequestIDHeader, id)
		next.ServeHTTP(w, r.WithContext(WithRequestID(r.Context(), id)))
	})
}

func usableRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if r > unicode.MaxASCII || unicode.IsControl(r) {
			return false
		}
	}
	return true
}
