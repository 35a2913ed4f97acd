// Command flux operates, inspects and time-travels FluxCapacitor event
// stores of any application, and runs a demo of the framework on the
// embedded SQLite store.
//
//	go run ./cmd/flux demo
//
// Run `flux help` for the commands. It reads stores without knowing their
// event types (payloads as stored); an application builds its own flux,
// which knows them, with package fluxcli.
package main

import "github.com/fluxcapacitor/flux/cmd/flux/fluxcli"

func main() {
	fluxcli.Run(fluxcli.Config{Commands: map[string]fluxcli.Command{"demo": fluxcli.Demo()}})
}
