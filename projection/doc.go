// Package projection builds read models from the global log: subscriptions
// that follow it from a checkpoint in commit order, a runner for several
// projections, and rebuilds.
package projection
