# Every module of the workspace (go.work).
GO ?= go
MODULES := $(shell $(GO) list -m -f '{{.Dir}}')

.PHONY: test test-full vet fmt-check gowork-off bench ci

# The service suites: name, the variable that enables them, the modules whose
# tests use it. Their tests skip when the variable is unset (and fail when
# FLUX_TEST_REQUIRE is set), so the summary is read from the environment.
SERVICES := PostgreSQL:FLUX_TEST_POSTGRES_DSN:pgstore,cmd/flux MySQL/MariaDB:FLUX_TEST_MYSQL_DSN:mysqlstore,cmd/flux NATS:FLUX_TEST_NATS_URL:natsrelay,cmd/flux

# run-modules runs $(1) in every module, keeps going after a failure, then
# prints which service suites ran and which modules failed, and fails if any did.
define run-modules
@failed=""; for m in $(MODULES); do echo "== $(2) $$m"; (cd $$m && $(1)) || failed="$$failed $$m"; done; \
echo; echo "== service suites"; \
for s in $(SERVICES); do name=$${s%%:*}; rest=$${s#*:}; var=$${rest%%:*}; mods=$${rest#*:}; \
  if [ -n "$$(printenv $$var)" ]; then echo "$$name ($$mods): ran ($$var is set)"; \
  elif [ -n "$$FLUX_TEST_REQUIRE" ]; then echo "$$name ($$mods): FAILED: $$var is not set and FLUX_TEST_REQUIRE is"; \
  else echo "$$name ($$mods): SKIPPED: $$var is not set, so this run did not test $$name"; fi; done; \
if [ -n "$$failed" ]; then echo; echo "FAIL:$$failed"; exit 1; fi; echo; echo "ok: every module passed"
endef

## test: run every module's tests with the race detector (needs cgo: a C
## compiler); runs every module even after a failure, then prints which
## service suites ran or were skipped, and fails if any module failed
test:
	@cc=$$($(GO) env CC); if [ "$$($(GO) env CGO_ENABLED)" != 1 ] || ! command -v "$${cc%% *}" >/dev/null; then \
	  echo "make test: the race detector needs cgo and a C compiler (CC=$$cc, CGO_ENABLED=$$($(GO) env CGO_ENABLED)); install gcc or clang, or run 'go test ./...' in a module"; exit 1; fi
	$(call run-modules,$(GO) test -race -count=1 ./...,test)

## test-full: the heavy acceptance tests at full size, without -race
test-full:
	$(call run-modules,FLUX_TEST_FULL=1 $(GO) test -count=1 -timeout 30m -run '^(TestConformance|TestProjectorSurvivesSIGKILL|TestRelaySurvivesServerRestarts)$$' ./...,test-full)

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
