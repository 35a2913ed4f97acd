package fluxui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/fluxcapacitor/flux"
	"github.com/fluxcapacitor/flux/pii"
)

// pageData is what every template receives.
type pageData struct {
	Page             string
	CSRF             string
	AllowWrites      bool
	ShowPersonalData bool
	HasRegistry      bool
	Error            string
	Status           int
	V                any
}

func (c *Console) base(_ *http.Request, page string) pageData {
	return pageData{Page: page, CSRF: c.csrf, AllowWrites: c.cfg.AllowWrites, ShowPersonalData: c.cfg.ShowPersonalData, HasRegistry: c.hidden != nil}
}

// render answers an HTML page, or its error.
func (c *Console) render(w http.ResponseWriter, r *http.Request, name string, v any, err error) {
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if pd, ok := v.(pageData); ok {
		c.renderStatus(w, r, http.StatusOK, name, pd, nil)
		return
	}
	pd := c.base(r, name)
	pd.V = v
	c.renderStatus(w, r, http.StatusOK, name, pd, nil)
}

// respond answers the result of a write: JSON when asked, the page
// otherwise.
func (c *Console) respond(w http.ResponseWriter, r *http.Request, name string, v any) {
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		writeJSON(w, http.StatusOK, v)
		return
	}
	c.render(w, r, name, v, nil)
}

func (c *Console) renderStatus(w http.ResponseWriter, r *http.Request, status int, name string, pd pageData, err error) {
	if err != nil {
		pd.Error, pd.Status = err.Error(), status
		name = "error"
	}
	var buf bytes.Buffer
	if terr := c.tmpl.ExecuteTemplate(&buf, name, pd); terr != nil {
		c.cfg.Logger.Error("fluxui: template", slog.String("page", name), slog.String("error", terr.Error()))
		http.Error(w, "internal error: the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error: the answer could not be encoded"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
	w.Write([]byte("\n"))
}

var funcs = template.FuncMap{
	"q": url.QueryEscape,
	"json": func(b json.RawMessage) string {
		return string(indent(b))
	},
	"short": func(s string) string {
		if len(s) > 13 {
			return s[:8] + "…"
		}
		return s
	},
	"add":        func(a, b int64) int64 { return a + b },
	"statusText": http.StatusText,
	"str":        func(v any) string { return fmt.Sprint(v) },
}

// hiddenData reads personal data as "[encrypted]": every encrypted value
// is replaced before decoding (or, where the field is not a string, left
// at its zero value). It cannot write.
type hiddenData struct{}

func (hiddenData) Protect(context.Context, any, []byte, string) ([]byte, error) {
	return nil, fmt.Errorf("%w: the console does not write personal data", flux.ErrPersonalData)
}

func (hiddenData) Unprotect(_ context.Context, data []byte, target any, _ string) ([]string, error) {
	if !bytes.Contains(data, []byte(pii.EnvelopePrefix)) {
		return nil, json.Unmarshal(data, target)
	}
	marked := envelopeRE.ReplaceAll(data, []byte(`"[encrypted]"`))
	if err := json.Unmarshal(marked, target); err == nil {
		return nil, nil
	}
	return nil, json.Unmarshal(envelopeRE.ReplaceAll(data, []byte(`null`)), target)
}
