package fluxcli

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// common holds the flags every store command takes.
type common struct {
	dsn  *string
	json *bool
}

func addCommon(fs *flag.FlagSet) common {
	return common{
		dsn:  fs.String("dsn", "", "event store: a SQLite `file`, postgres://… or mysql://… (default $FLUX_DSN, else "+DefaultDSN+")"),
		json: fs.Bool("json", false, "print JSON lines (one object per line) instead of a table"),
	}
}

// table prints rows under headers, aligned.
func table(w io.Writer, headers []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// jsonLines prints each value as one JSON line.
func jsonLines[T any](w io.Writer, values []T) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, v := range values {
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}

const timeFormat = "2006-01-02 15:04:05"

// stamp is a moment in output: "2006-01-02 15:04:05" (UTC) in tables,
// RFC 3339 in UTC in JSON (null when unknown).
type stamp time.Time

func (s stamp) String() string { return fmtTime(time.Time(s)) }

func (s stamp) MarshalJSON() ([]byte, error) {
	t := time.Time(s)
	if t.IsZero() {
		return []byte("null"), nil
	}
	return []byte(`"` + t.UTC().Format(time.RFC3339Nano) + `"`), nil
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(timeFormat)
}

// parseTime reads a moment given on the command line: RFC 3339, a UTC
// date and time ("2026-01-02 15:04[:05]", also with a T), a date, "now",
// or a duration before now ("-90m", "2h ago").
func parseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "now" {
		return now.UTC(), nil
	}
	if d, ok := strings.CutSuffix(s, " ago"); ok {
		s = "-" + strings.TrimSpace(d)
	}
	if strings.HasPrefix(s, "-") {
		if d, err := time.ParseDuration(s); err == nil {
			return now.Add(d).UTC(), nil
		}
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, &usageError{fmt.Sprintf("cannot read time %q: use RFC 3339 (2026-01-02T15:04:05Z), \"2026-01-02 15:04\" (UTC), a date, \"now\" or \"-2h\"", s)}
}

// strings is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// shorten keeps tables readable: long payloads are cut.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// canonicalJSON returns the stored JSON document b compacted, with object
// keys sorted and numbers and strings as written, so that a payload reads
// the same on every backend (PostgreSQL's jsonb reorders keys and adds
// spaces). b is returned unchanged if it does not parse.
func canonicalJSON(b []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return b
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return b
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n"))
}

// report prints the outcome of a command that changes the store: text for
// people, or with --json one JSON object for scripts.
func (m *Main) report(asJSON bool, v any, format string, args ...any) error {
	if asJSON {
		return jsonLines(m.Stdout, []any{v})
	}
	_, err := fmt.Fprintf(m.Stdout, format+"\n", args...)
	return err
}

// count is a flag holding a whole number >= 0: "-5", "1.5" and "ten" are
// usage errors rather than surprises.
type count struct{ v *int64 }

func (c count) String() string {
	if c.v == nil {
		return "0"
	}
	return strconv.FormatInt(*c.v, 10)
}

func (c count) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return errors.New("want a whole number >= 0")
	}
	*c.v = n
	return nil
}

// countFlag defines a count flag.
func countFlag(fs *flag.FlagSet, name, usage string) *int64 {
	v := new(int64)
	fs.Var(count{v}, name, usage)
	return v
}
