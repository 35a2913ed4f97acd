// Package e2e drives the flux console in a real headless browser
// (Chromium over the DevTools protocol): it builds the flux command, fills
// a store with `flux demo`, serves `flux ui --allow-writes` and clicks
// through the console as a person would; BenchmarkConsole times the
// console's handlers on a large SQLite store. It is a module of its own so the
// browser client never becomes a dependency of the core.
//
// The test needs Chromium (.ci/install-e2e-deps installs Debian's);
// without it the test skips, or fails when FLUX_TEST_REQUIRE is set.
// FLUX_E2E_SCREENSHOTS names a folder to keep the screenshots in (default:
// a temporary folder, logged).
package e2e
