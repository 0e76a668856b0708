# tufota — the habits, by name. Every target is safe to rerun.
#
#   make build      compile every package; CLI binaries into bin/
#   make test       provision MinIO, PostgreSQL and SoftHSM2 (cached), run every test
#                   with -race, tear the services down (scripts/testenv.sh)
#   make test-short unit tests only (-short: integration tests skip, loudly)
#   make lint       gofmt, go vet, staticcheck, gosec (tools pinned, cached)
#   make fuzz       every FuzzXxx for FUZZTIME each (default 20000x: a count of executions)
#   make bench      every benchmark once
#   make bench-run  bench/run: tufota against nginx, openssl, dd and curl on loopback;
#                   writes bench/results.md and bench/results.json (BENCH_* settings, see bench/run)
#   make bench-fleet bench/fleet: tufota sim with 10,000 devices against one server on loopback
#                   while a rollout goes through three waves; writes bench/fleet-results.md
#                   and bench/fleet-results.json (BENCH_FLEET_* settings, see bench/fleet)
#   make fixtures   regenerate repo-fixtures/ and every package's golden files (-update)
#
# Cache: $(TUFOTA_CACHE) (tools, the MinIO binary). Variables you may set:
#   PKGS (default ./...), TESTFLAGS (extra go test flags), FUZZTIME, BENCHFLAGS.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

GO        ?= go
PKGS      ?= ./...
TESTFLAGS ?=
FUZZTIME  ?= 20000x
BENCHFLAGS ?= -benchmem -count=1

export TUFOTA_CACHE ?= $(if $(XDG_CACHE_HOME),$(XDG_CACHE_HOME),$(HOME)/.cache)/tufota

.PHONY: build test test-short testenv-install lint fuzz bench bench-run bench-fleet fixtures clean

build:
	$(GO) build ./...
	@if [ -d cmd ]; then mkdir -p bin && $(GO) build -o bin/ ./cmd/...; fi

test:
	scripts/testenv.sh $(GO) test -race -count=1 -timeout 45m $(TESTFLAGS) $(PKGS)

test-short:
	$(GO) test -short -race -count=1 $(TESTFLAGS) $(PKGS)

# Install/build what make test needs (apt packages, MinIO) without starting anything.
testenv-install:
	scripts/testenv.sh --install-only

lint:
	scripts/lint.sh

fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . $(BENCHFLAGS) $(PKGS)

bench-run:
	bench/run

bench-fleet:
	bench/fleet

# The TUF test repositories (repo-fixtures/gen), then the golden files of every
# other package whose tests take -update (-short: golden files need no services).
fixtures:
	@if [ -d repo-fixtures/gen ]; then echo "go run ./repo-fixtures/gen"; $(GO) run ./repo-fixtures/gen; fi
	@for d in $$(grep -rl --include='*_test.go' 'flag.Bool("update"' . | xargs -r -n1 dirname | sort -u); do \
		[ "$$d" = ./repo-fixtures ] && [ -d repo-fixtures/gen ] && continue; \
		echo "$(GO) test -short $$d -run . -count=1 -update"; $(GO) test -short "$$d" -run . -count=1 -update; \
	done

clean:
	rm -rf bin/ coverage.out
