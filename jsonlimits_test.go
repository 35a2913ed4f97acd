package flux

import (
	"strings"
	"testing"
)

func TestJSONLimits(t *testing.T) {
	t.Parallel()
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, c := range []struct {
		json string
		ok   bool
	}{
		{`{}`, true},
		{deep(MaxJSONDepth), true},
		{deep(MaxJSONDepth + 1), false},
		{`[` + deep(MaxJSONDepth) + `,1]`, false},
		{`"` + strings.Repeat("{", 100) + `"`, true},
		{`"\ud83d\ude80"`, true},
		{`"\uD83D\uDE80"`, true},
		{`"\\ud800"`, true},
		{`"\\\ud800"`, false},
		{`"\ud800"`, false},
		{`"\udfff"`, false},
		{`"\ud800x"`, false},
		{`"\ud800\n"`, false},
		{`"\ud800\ud800"`, false},
		{`"\ud800\u0041"`, false},
		{`["\ud83d\ude80","\u00e9\"",{"\ud800":1}]`, false},
		{`["\ud83d\ude80","\u00e9\"",{"k":"\"[["}]`, true},
	} {
		if got := jsonLimits([]byte(c.json)) == ""; got != c.ok {
			t.Errorf("jsonLimits(%s) accepts = %v, want %v (%s)", c.json, got, c.ok, jsonLimits([]byte(c.json)))
		}
	}
}
