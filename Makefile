# pingora-parity: build both routers and the harness, run the parity suite and benchmarks.
# CARGO_TARGET_DIR may point outside the clone as a cache; the default is ./target.
CARGO_TARGET_DIR ?= $(CURDIR)/target
export CARGO_TARGET_DIR
CARGO ?= cargo
GO ?= go
BIN := $(CURDIR)/bin
REL := $(CARGO_TARGET_DIR)/release
# Toxiproxy (network faults in scenarios with a `toxiproxy:` block), pinned; the harness
# checks the same version (harness/src/toxiproxy.rs, VERSION).
TOXIPROXY_VERSION := v2.5.0

.PHONY: all build build-go build-rust tools soak soak-ci run test test-go test-rust suite fuzz fuzz-ci chaos chaos-ci bench clean help

all: build

help:
	@echo "make run    build everything, run the parity suite and a quick benchmark"
	@echo "make test   every unit test (Go, Rust) and the scenario suite"
	@echo "make bench  the full benchmark comparison (results/latest/report.md)"
	@echo "make soak   each router SOAK_S seconds (600) under load and disturbances (docs/soak.md)"
	@echo "make fuzz   differential fuzzing of both routers until interrupted (docs/fuzzing.md)"
	@echo "make chaos  random fault schedules under load on both routers, CHAOS_S seconds (1800; docs/chaos.md)"

build: build-go build-rust tools

# Third-party tools the scenarios need, from the Go module proxy into ./bin.
# The stamp names the version, so changing TOXIPROXY_VERSION installs again.
tools: $(BIN)/.toxiproxy-$(TOXIPROXY_VERSION)

$(BIN)/.toxiproxy-$(TOXIPROXY_VERSION):
	@mkdir -p $(BIN)/.tools
	GOBIN=$(BIN)/.tools GOFLAGS=-buildvcs=false $(GO) install github.com/Shopify/toxiproxy/v2/cmd/server@$(TOXIPROXY_VERSION)
	mv -f $(BIN)/.tools/server $(BIN)/toxiproxy-server
	@rmdir $(BIN)/.tools
	@rm -f $(BIN)/.toxiproxy-v* && touch $@

build-go:
	@mkdir -p $(BIN)
	cd go-baseline && $(GO) build -o $(BIN)/go-router ./cmd/router
	cd go-baseline && if [ -d cmd/bare ]; then $(GO) build -o $(BIN)/go-bare ./cmd/bare; fi

build-rust:
	@mkdir -p $(BIN)
	$(CARGO) build --release --workspace --bins
	cp --remove-destination $(REL)/pingora-router $(REL)/parity $(BIN)/
	if [ -f $(REL)/pingora-bare ]; then cp --remove-destination $(REL)/pingora-bare $(BIN)/; fi

test: test-go test-rust suite soak-ci chaos-ci fuzz-ci

test-go:
	cd go-baseline && $(GO) vet ./... && $(GO) test -race -count=1 ./...

test-rust:
	$(CARGO) test --release --workspace

# The suite, then the oracle's own proof: each of its injected differences is reported.
suite: build
	$(BIN)/parity run scenarios --out results
	$(BIN)/parity selftest --impl go
	$(BIN)/parity selftest --impl pingora

# Differential fuzzing until interrupted (Ctrl-C writes the findings; docs/fuzzing.md).
fuzz: build
	$(BIN)/parity fuzz --out results

# The fixed-seed fuzz run of `make test` (about 60 s): exits 1 on any divergence that
# docs/divergences.md does not document (docs/fuzzing.md).
fuzz-ci: build
	$(BIN)/parity fuzz --seed 1 --time 60s --out results

# Random fault schedules (config pushes, upstream faults, toxics, control-plane loss,
# restarts) under load on both routers, CHAOS_S seconds; findings under
# results/chaos-*/findings/ (docs/chaos.md).
CHAOS_S ?= 1800
chaos: build
	$(BIN)/parity chaos --time $(CHAOS_S)s --events 12 --out results

# The fixed-seed chaos run of `make test`: 8 schedules of 10 events, about 60 s.
chaos-ci: build
	$(BIN)/parity chaos --seed 12 --cases 8 --events 10 --out results

# The suite's verdict decides the exit status; the quick benchmark runs either way.
run: build
	@rc=0; $(BIN)/parity run scenarios --out results || rc=$$?; \
	$(BIN)/parity bench scenarios/bench/quick.yaml --out results; b=$$?; \
	[ $$rc -ne 0 ] || rc=$$b; \
	echo "scenario matrix: results/latest-suite/report.md   benchmark: results/latest-bench/report.md"; \
	exit $$rc

bench: build
	@command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || apt-get install -y -qq nginx-light wrk >/dev/null 2>&1 \
		|| echo "nginx not installed (apt-get install nginx-light): the nginx target will be absent"
	@command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || apt-get install -y -qq haproxy >/dev/null 2>&1 \
		|| echo "haproxy not installed (apt-get install haproxy): the haproxy target will be absent"
	$(BIN)/parity bench scenarios/bench/full.yaml --out results

# Soak: each router SOAK_S seconds under load with config swaps, flaps, breaker trips and
# control-plane drops; results/soak-*/soak.md (docs/soak.md). CI: make soak SOAK_S=60.
SOAK_S ?= 600
soak: build
	$(BIN)/parity soak --duration-s $(SOAK_S) --out results

# The CI length, part of make test: 60 s per router; count slopes tolerate 15/min there
# (a minute holds under nine flap periods, so the saw-tooth alone gives about 10/min).
soak-ci: build
	$(BIN)/parity soak --duration-s 60 --max-count-per-min 15 --out results

clean:
	rm -rf $(BIN) target results/*/ results/latest results/latest-suite results/latest-bench
