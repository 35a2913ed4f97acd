// Command flux operates, inspects and time-travels FluxCapacitor event
// stores, and runs a demo of the framework on the embedded SQLite store.
//
//	go run ./cmd/flux demo
//
// Run `flux help` for the commands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
