# Every module of the workspace (go.work).
GO ?= go
MODULES := $(shell $(GO) list -m -f '{{.Dir}}')

.PHONY: test test-full vet fmt-check gowork-off bench ci

## test: run every module's tests with the race detector
test:
	@set -e; for m in $(MODULES); do echo "== test $$m"; (cd $$m && $(GO) test -race -count=1 ./...); done

## test-full: the heavy acceptance tests at full size, without -race
test-full:
	@set -e; for m in $(MODULES); do echo "== test-full $$m"; (cd $$m && FLUX_TEST_FULL=1 $(GO) test -count=1 -run 'TestConformance|TestProjectorSurvivesSIGKILL|TestRelaySurvivesServerRestarts' ./...); done

## vet: go vet every module
vet:
	@set -e; for m in $(MODULES); do echo "== vet $$m"; (cd $$m && $(GO) vet ./...); done

## fmt-check: fail if a file is not gofmt-formatted
fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## gowork-off: build and vet every module on its own, without go.work
gowork-off:
	@set -e; for m in $(MODULES); do echo "== GOWORK=off $$m"; (cd $$m && GOWORK=off $(GO) build ./... && GOWORK=off $(GO) vet ./...); done

## bench: the SQLite benchmarks with medians and ratios
bench:
	$(GO) test -run '^$$' -bench . -count 6 ./sqlitestore | $(GO) run ./internal/benchratio

ci: fmt-check vet gowork-off test
