package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRatiosFromMedians(t *testing.T) {
	in := `goos: linux
BenchmarkAppend1/raw-2     1000   100.0 ns/op
BenchmarkAppend1/flux-2    1000   130.0 ns/op
BenchmarkAppend1/raw-2     1000   300.0 ns/op
BenchmarkAppend1/flux-2    1000   120.0 ns/op
BenchmarkAppend1/raw-2     1000   110.0 ns/op
BenchmarkAppend1/flux-2    1000   500.0 ns/op
BenchmarkOther-2           1000   10 ns/op
`
	var out bytes.Buffer
	if err := run(strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	// medians: raw 110, flux 130 -> 0.85x
	for _, want := range []string{"BenchmarkAppend1  raw   3  110  1.00x", "BenchmarkAppend1  flux  3  130  0.85x"} {
		if !strings.Contains(strings.Join(strings.Fields(got), " "), strings.Join(strings.Fields(want), " ")) {
			t.Fatalf("output lacks %q:\n%s", want, got)
		}
	}
}
