// Package budget is the PHP FluxCapacitor's example domain in Go: users who
// sign up with personal data, budget envelopes they credit, debit and
// transfer between, and registries that keep e-mail addresses and envelope
// names unique. It is the reference for how an application uses the
// framework, and the domain of the `flux demo` command.
package budget
