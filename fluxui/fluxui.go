// Package fluxui is the web console of a FluxCapacitor event store: browse
// streams, read events, travel through an aggregate's history version by
// version, compare two versions, follow a correlation ID, tail the global
// log live, and watch or rebuild projections.
//
// New returns an http.Handler; the `flux ui` command serves it, and an
// application can mount it in its own server with its own registry,
// protector and projections:
//
//	h, err := fluxui.New(fluxui.Config{Store: store, Repository: repo, Runner: runner})
//	http.ListenAndServe("127.0.0.1:8080", h)
//
// # Safety
//
// The console is read-only unless Config.AllowWrites; then rebuilding a
// projection and forgetting a data subject need a typed confirmation and a
// CSRF token bound to the handler. Without Config.Token the console answers
// only requests addressed to a loopback host (so a web page cannot reach it
// through DNS rebinding); CheckAddr refuses a non-loopback listening
// address without a token. With a token every request must carry it (as
// ?token= once, then in a cookie, or as a Bearer header). Personal data
// shows as "[encrypted]" unless Config.ShowPersonalData. Inputs are
// validated and errors are rendered as messages; a panic in a handler is
// answered with a generic message, never a stack trace.
//
// Every page has a JSON twin under /api (for example /api/streams).
package fluxui

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
	"github.com/fluxcapacitor/flux/projection"
)

//go:embed assets
var assets embed.FS

// Config configures the console. Store is required; everything else is
// optional and documents its default.
type Config struct {
	// Store is the event store to show. It must implement flux.Inspector
	// (every backend of this repository does) for the stream list.
	Store flux.EventStore
	// Repository, over the same store, knows the application's registry:
	// with it the console shows aggregate state (time travel, diff) and
	// decoded payloads. Default: none; state pages say they need one and
	// payloads show as stored JSON.
	Repository *flux.Repository
	// Runner holds the application's projections: their status, and
	// rebuild when writes are allowed. Default: none; the projections page
	// lists the checkpoints in the store (when it keeps them).
	Runner *projection.Runner
	// Protector is the application's personal-data protector. Forget goes
	// through it when set (so its cache learns at once); otherwise through
	// the store's key store. Decryption goes through Repository's own
	// protector.
	Protector *pii.Protector
	// AllowWrites enables rebuilding projections and forgetting subjects.
	// Default: false (read-only).
	AllowWrites bool
	// ShowPersonalData shows personal data decrypted (through Repository's
	// protector). Default: false; encrypted values show as "[encrypted]".
	ShowPersonalData bool
	// Token, when set, is required on every request. Default: none; then
	// only requests addressed to a loopback host are answered.
	Token string
	// Clock tells time (lag, relative times). Default: time.Now.
	Clock func() time.Time
	// Logger receives request errors and recovered panics. Default: discard.
	Logger *slog.Logger
	// PollInterval is how often the live tail looks for new events.
	// Default: 500ms.
	PollInterval time.Duration
}

// Console is the console's http.Handler.
type Console struct {
	cfg    Config
	insp   flux.Inspector
	hidden *flux.Repository // Repository's registry, personal data hidden
	csrf   string
	tmpl   *template.Template
	mux    *http.ServeMux
}

// New returns the console over cfg.Store. It fails when Store is nil or is
// not a flux.Inspector, or when ShowPersonalData is set without a
// Repository to decrypt with.
func New(cfg Config) (*Console, error) {
	var errs []error
	if cfg.Store == nil {
		errs = append(errs, errors.New("fluxui: Config.Store is nil"))
	}
	insp, ok := cfg.Store.(flux.Inspector)
	if cfg.Store != nil && !ok {
		errs = append(errs, fmt.Errorf("fluxui: store %T does not implement flux.Inspector", cfg.Store))
	}
	if cfg.ShowPersonalData && cfg.Repository == nil {
		errs = append(errs, errors.New("fluxui: ShowPersonalData needs a Repository whose protector decrypts"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 500 * time.Millisecond
	}
	c := &Console{cfg: cfg, insp: insp}
	if cfg.Repository != nil {
		if cfg.ShowPersonalData {
			c.hidden = cfg.Repository
		} else {
			r, err := flux.NewRepository(flux.Config{Store: cfg.Repository.Store(), Registry: cfg.Repository.Registry(), Protector: hiddenData{}})
			if err != nil {
				return nil, fmt.Errorf("fluxui: %w", err)
			}
			c.hidden = r
		}
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	c.csrf = hex.EncodeToString(b[:])
	t, err := template.New("").Funcs(funcs).ParseFS(assets, "assets/*.html")
	if err != nil {
		return nil, fmt.Errorf("fluxui: templates: %w", err)
	}
	c.tmpl = t
	c.routes()
	return c, nil
}

// CheckAddr reports whether the console may listen on addr: a non-loopback
// address (including an empty host, which means every interface) needs a
// token.
func CheckAddr(addr, token string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w; give host:port, e.g. 127.0.0.1:8080", addr, err)
	}
	if isLoopback(host) || token != "" {
		return nil
	}
	return fmt.Errorf("address %q is reachable from other machines: give a token (--token) or listen on 127.0.0.1", addr)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

func (c *Console) routes() {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets/static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/streams", http.StatusFound) })
	c.page(mux, "streams", c.streams)
	c.page(mux, "stream", c.stream)
	c.page(mux, "state", c.state)
	c.page(mux, "diff", c.diff)
	c.page(mux, "trace", c.trace)
	c.page(mux, "projections", c.projections)
	c.page(mux, "forget", c.forgetPage)
	mux.HandleFunc("GET /tail", func(w http.ResponseWriter, r *http.Request) { c.render(w, r, "tail", c.base(r, "tail"), nil) })
	mux.HandleFunc("GET /api/tail", c.tail)
	mux.HandleFunc("POST /projections/rebuild", c.write(c.rebuild))
	mux.HandleFunc("POST /forget", c.write(c.forget))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, &httpError{http.StatusNotFound, fmt.Sprintf("no page at %s", r.URL.Path)})
	})
	c.mux = mux
}

// page registers the HTML page /name and its JSON twin /api/name.
func (c *Console) page(mux *http.ServeMux, name string, fn func(r *http.Request) (any, error)) {
	mux.HandleFunc("GET /"+name, func(w http.ResponseWriter, r *http.Request) {
		v, err := fn(r)
		c.render(w, r, name, v, err)
	})
	mux.HandleFunc("GET /api/"+name, func(w http.ResponseWriter, r *http.Request) {
		v, err := fn(r)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	})
}

// ServeHTTP answers one request: security headers, the token or loopback
// check, then the page. A panic is logged and answered with a message.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			c.cfg.Logger.Error("fluxui: panic", slog.String("path", r.URL.Path), slog.Any("panic", p))
			c.fail(w, r, &httpError{http.StatusInternalServerError, "internal error: the console hit a bug; the server log has the details"})
		}
	}()
	if !c.authorized(w, r) {
		return
	}
	c.mux.ServeHTTP(w, r)
}

const tokenCookie = "flux_ui_token"

func (c *Console) authorized(w http.ResponseWriter, r *http.Request) bool {
	if c.cfg.Token == "" {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if !isLoopback(host) {
			c.fail(w, r, &httpError{http.StatusForbidden, fmt.Sprintf("host %q refused: without a token the console answers only requests to a loopback address (127.0.0.1, localhost)", host)})
			return false
		}
		return true
	}
	if q := r.URL.Query().Get("token"); q != "" {
		if !c.tokenOK(q) {
			c.fail(w, r, &httpError{http.StatusUnauthorized, "wrong token"})
			return false
		}
		http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: q, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		u := *r.URL
		qs := u.Query()
		qs.Del("token")
		u.RawQuery = qs.Encode()
		http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
		return false
	}
	if ck, err := r.Cookie(tokenCookie); err == nil && c.tokenOK(ck.Value) {
		return true
	}
	if a, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && c.tokenOK(a) {
		return true
	}
	c.fail(w, r, &httpError{http.StatusUnauthorized, "this console needs its token: open the address printed when it started (it ends in ?token=...)"})
	return false
}

func (c *Console) tokenOK(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(c.cfg.Token)) == 1
}

// write wraps a mutating handler: writes must be allowed, the CSRF token
// must match and a cross-origin request is refused.
func (c *Console) write(fn func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !c.cfg.AllowWrites {
			c.fail(w, r, &httpError{http.StatusForbidden, "the console is read-only: start it with --allow-writes (Config.AllowWrites) to rebuild projections or forget subjects"})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			c.fail(w, r, &httpError{http.StatusBadRequest, "unreadable form: " + err.Error()})
			return
		}
		tok := r.PostForm.Get("csrf")
		if tok == "" {
			tok = r.Header.Get("X-CSRF-Token")
		}
		if subtle.ConstantTimeCompare([]byte(tok), []byte(c.csrf)) != 1 {
			c.fail(w, r, &httpError{http.StatusForbidden, "refused: the request carries no valid CSRF token; reload the page and try again"})
			return
		}
		if o := r.Header.Get("Origin"); o != "" && o != "null" && !sameOrigin(o, r.Host) {
			c.fail(w, r, &httpError{http.StatusForbidden, fmt.Sprintf("refused: request from origin %q to host %q", o, r.Host)})
			return
		}
		if err := fn(w, r); err != nil {
			c.fail(w, r, err)
		}
	}
}

func sameOrigin(origin, host string) bool {
	_, rest, ok := strings.Cut(origin, "://")
	return ok && strings.EqualFold(rest, host)
}

// httpError is an error with the status it is answered with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &httpError{http.StatusNotFound, fmt.Sprintf(format, args...)}
}

func statusOf(err error) int {
	var he *httpError
	switch {
	case errors.As(err, &he):
		return he.status
	case errors.Is(err, flux.ErrAggregateNotFound):
		return http.StatusNotFound
	case errors.Is(err, flux.ErrInvalidStreamID), errors.Is(err, flux.ErrUnknownAggregate), errors.Is(err, flux.ErrAggregateTypeMismatch):
		return http.StatusBadRequest
	case errors.Is(err, context.Canceled):
		return 499
	}
	return http.StatusInternalServerError
}

// fail answers err as a message: JSON under /api, a page otherwise.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	if status >= 500 {
		c.cfg.Logger.Warn("fluxui: request failed", slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	}
	if strings.HasPrefix(r.URL.Path, "/api/") || strings.Contains(r.Header.Get("Accept"), "application/json") && !strings.Contains(r.Header.Get("Accept"), "text/html") {
		writeJSON(w, status, map[string]string{"error": err.Error()})
		return
	}
	c.renderStatus(w, r, status, "error", c.base(r, ""), err)
}
