package fluxcli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/fluxcapacitor/flux/fluxui"
	"github.com/fluxcapacitor/flux/pii"
)

const uiSynopsis = `Serves the web console: browse and search streams, read events with their
request, correlation and causation IDs, travel through an aggregate's
history version by version (slider or arrow keys), compare two versions,
follow a correlation ID as a tree, tail the global log live, and watch
projections. Everything it shows is embedded in this binary.

It listens on the loopback interface unless told otherwise; another
address needs --token (or FLUX_UI_TOKEN), which every request must then
carry. It is read-only unless --allow-writes (projection rebuilds and
forgetting subjects, each with a typed confirmation). Personal data shows as
[encrypted] unless --show-personal-data, which needs KEY_MANAGEMENT_SECRET.`

func runUI(ctx context.Context, m *Main, args []string) error {
	fs := m.newFlagSet("ui [--addr HOST:PORT] [--allow-writes] [--show-personal-data] [--token TOKEN]", uiSynopsis,
		"  flux ui --dsn flux.db\n  flux ui --dsn postgres://localhost/app --addr 127.0.0.1:9000 --allow-writes\n  FLUX_UI_TOKEN=$(openssl rand -hex 16) flux ui --addr 0.0.0.0:8080")
	dsn := fs.String("dsn", "", "event store: a SQLite `file`, postgres://… or mysql://… (default $FLUX_DSN, else "+DefaultDSN+")")
	addr := fs.String("addr", "127.0.0.1:8080", "listen on this `host:port` (port 0 picks a free one)")
	allowWrites := fs.Bool("allow-writes", false, "allow rebuilding projections and forgetting subjects")
	showPII := fs.Bool("show-personal-data", false, "show personal data decrypted (needs "+pii.SecretEnv+")")
	token := fs.String("token", "", "require this `token` on every request (default $FLUX_UI_TOKEN); needed off loopback")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *token == "" {
		*token = m.Getenv("FLUX_UI_TOKEN")
	}
	if err := fluxui.CheckAddr(*addr, *token); err != nil {
		return &usageError{err.Error()}
	}
	if *showPII && m.Getenv(pii.SecretEnv) == "" {
		return &usageError{"--show-personal-data needs " + pii.SecretEnv + " to decrypt"}
	}
	return m.withBackend(ctx, *dsn, accessFor(!*allowWrites), func(b *Backend) error {
		a, err := m.openApp(b)
		if err != nil {
			return err
		}
		if *allowWrites { // projections may create their read models: writes only
			if err := a.addProjections(ctx, m, b); err != nil {
				return err
			}
		}
		h, err := fluxui.New(fluxui.Config{Store: b.store, Repository: a.repo, Runner: a.runner, Protector: a.protector,
			AllowWrites: *allowWrites, ShowPersonalData: *showPII, Token: *token, Clock: m.Clock})
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", *addr, err)
		}
		url := "http://" + ln.Addr().String() + "/"
		if *token != "" {
			url += "?token=" + *token
		}
		mode := "read-only"
		if *allowWrites {
			mode = "writes allowed"
		}
		fmt.Fprintf(m.Stdout, "flux console on %s (%s %s, %s); Ctrl-C to stop\n", url, backendName(b.kind), b.where, mode)
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ln) }()
		select {
		case err := <-done:
			return err
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		fmt.Fprintln(m.Stdout, "stopped")
		return nil
	})
}
