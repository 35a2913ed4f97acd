//go:build race

package sqlitestore_test

// raceEnabled: the race detector slows the pure-Go SQLite down ~20x, so
// the heaviest tests run smaller (CI runs them full size without -race).
const raceEnabled = true
