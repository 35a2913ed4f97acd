package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/fluxcapacitor/flux"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"
)

func TestInterpretError(t *testing.T) {
	t.Parallel()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	live := context.Background()
	pg := func(code, msg string) error {
		return fmt.Errorf("wrapped: %w", &pgconn.PgError{Severity: "FATAL", Code: code, Message: msg})
	}
	cases := []struct {
		name    string
		ctx     context.Context
		err     error
		outcome string
		is      []error  // must match all
		isNot   []error  // must match none
		says    []string // the message must contain each
	}{
		{"server shutdown while writing", live, pg("57P01", "terminating connection due to administrator command"), nothingCommitted,
			[]error{flux.ErrStoreUnavailable}, nil, []string{"lost the connection to PostgreSQL", "nothing was committed", "administrator command"}},
		{"crash shutdown", live, pg("57P02", "terminating connection because of crash of another server process"), "",
			[]error{flux.ErrStoreUnavailable}, nil, []string{"lost the connection"}},
		{"connection failure class 08", live, pg("08006", "connection failure"), nothingCommitted,
			[]error{flux.ErrStoreUnavailable}, nil, []string{"lost the connection", "nothing was committed"}},
		{"server starting up", live, pg("57P03", "the database system is starting up"), nothingCommitted,
			[]error{flux.ErrStoreUnavailable}, nil, []string{"cannot serve requests now", "retry later"}},
		{"too many connections", live, pg("53300", "sorry, too many clients already"), "",
			[]error{flux.ErrStoreUnavailable}, nil, []string{"cannot serve requests now"}},
		{"unexpected EOF mid-statement", live, fmt.Errorf("read: %w", io.ErrUnexpectedEOF), nothingCommitted,
			[]error{flux.ErrStoreUnavailable, io.ErrUnexpectedEOF}, nil, []string{"lost the connection", "nothing was committed"}},
		{"connection reset", live, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, outcomeUnknown,
			[]error{flux.ErrStoreUnavailable}, nil, []string{"lost the connection", "may have been committed"}},
		{"connection refused", live, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, nothingCommitted,
			[]error{flux.ErrStoreUnavailable}, nil, []string{"PostgreSQL"}},
		{"closed connection", live, fmt.Errorf("x: %w", pgconn.ErrConnClosed), nothingCommitted,
			[]error{flux.ErrStoreUnavailable}, nil, []string{"lost the connection"}},
		{"cancelled context reported as query_canceled", cancelled, pg("57014", "canceling statement due to user request"), nothingCommitted,
			[]error{context.Canceled}, []error{flux.ErrStoreUnavailable}, []string{"nothing was committed"}},
		{"cancelled context reported as a dropped connection", cancelled, io.EOF, nothingCommitted,
			[]error{context.Canceled}, []error{flux.ErrStoreUnavailable}, nil},
		{"statement timeout", live, pg("57014", "canceling statement due to statement timeout"), "",
			nil, []error{context.Canceled, flux.ErrStoreUnavailable}, []string{"statement_timeout"}},
		{"serialization failure", live, pg("40001", "could not serialize access due to concurrent update"), nothingCommitted,
			[]error{flux.ErrTransient}, []error{flux.ErrStoreUnavailable}, []string{"run it again", "nothing was committed"}},
		{"deadlock", live, pg("40P01", "deadlock detected"), nothingCommitted,
			[]error{flux.ErrTransient}, nil, []string{"deadlock detected"}},
		{"lock not available", live, pg("55P03", "could not obtain lock"), "",
			[]error{flux.ErrTransient}, nil, nil},
		{"closed pool", live, puddle.ErrClosedPool, "",
			[]error{flux.ErrStoreClosed}, []error{flux.ErrStoreUnavailable}, []string{"pool was closed"}},
		{"missing table", live, pg("42P01", `relation "x.events" does not exist`), "",
			nil, []error{flux.ErrStoreUnavailable}, []string{"Migrate"}},
		{"other server error keeps its code", live, pg("22P02", "invalid input syntax"), "",
			nil, []error{flux.ErrStoreUnavailable}, []string{"SQLSTATE 22P02"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := interpretError(c.ctx, "append", c.err, c.outcome)
			for _, target := range c.is {
				if !errors.Is(err, target) {
					t.Errorf("%v does not match %v", err, target)
				}
			}
			for _, target := range c.isNot {
				if errors.Is(err, target) {
					t.Errorf("%v matches %v", err, target)
				}
			}
			for _, s := range c.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not say %q", err, s)
				}
			}
			var pgErr *pgconn.PgError
			if errors.As(c.err, &pgErr) && !errors.As(err, &pgErr) {
				t.Errorf("%v lost the *pgconn.PgError", err)
			}
		})
	}
	if interpretError(live, "x", nil, "") != nil {
		t.Fatal("nil error interpreted as an error")
	}
}

func TestConflictingStream(t *testing.T) {
	t.Parallel()
	req := &flux.AppendRequest{Streams: []flux.StreamAppend{{StreamID: "a"}, {StreamID: "b, c"}, {StreamID: "d"}}}
	cases := []struct {
		detail string
		want   string
	}{
		{"Key (aggregate_id, version)=(d, 1) already exists.", "d"},
		{"Key (aggregate_id, version)=(b, c, 7) already exists.", "b, c"},
		{"Key (aggregate_id, version)=(zzz, 1) already exists.", ""},
		{"", ""},
	}
	for _, c := range cases {
		got := ""
		if st := conflictingStream(req, c.detail); st != nil {
			got = st.StreamID
		}
		if got != c.want {
			t.Errorf("conflictingStream(%q) = %q, want %q", c.detail, got, c.want)
		}
	}
}

func TestChannelName(t *testing.T) {
	t.Parallel()
	if got := channelName("public"); got != "flux_events:public" {
		t.Fatalf("channelName(public) = %q", got)
	}
	long := strings.Repeat("s", 63)
	a, b := channelName(long), channelName(long[:62]+"t")
	if len(a) > 63 || len(b) > 63 || a == b {
		t.Fatalf("long schema names: %q and %q", a, b)
	}
}
