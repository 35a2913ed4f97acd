package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestQuickStartRuns(t *testing.T) {
	if err := run(t.Context(), filepath.Join(t.TempDir(), "flux.db")); err != nil {
		t.Fatal(err)
	}
}

// The README shows this file verbatim; this test keeps the two in sync.
func TestREADMEShowsThisFile(t *testing.T) {
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := append(append([]byte("```go\n"), src...), []byte("```\n")...)
	if !bytes.Contains(readme, block) {
		t.Fatal("README.md's quick start differs from examples/quickstart/main.go; copy the file into the README's ```go block")
	}
}
