# pgswitch developer entry points. `make run` and `make test` are all most people need.
SHELL := /bin/bash
BUILD_DIR ?= build
MESON_BUILDTYPE ?= debugoptimized
export BUILD_DIR

.DEFAULT_GOAL := help
.PHONY: help deps build run test unit clean cluster-start cluster-stop cluster-status

help:
	@echo "pgswitch — make targets"
	@echo "  make run            build, start a local primary + 2 replicas, run pgswitch on 127.0.0.1:6432"
	@echo "  make test           build, run the unit tests and the end-to-end tests (prints 'N passed, M failed')"
	@echo "  make unit           build, run the unit tests only"
	@echo "  make bench          build, benchmark pgswitch vs direct, PgBouncer, pgpool-II (bench/README.md; QUICK=1 for a short run)"
	@echo "  make bench-callgrind  build, instructions per statement under valgrind callgrind (bench/results/callgrind.md)"
	@echo "  make bench-scaleout  build, server-bound: each server CPU-capped (cgroup v1, SCALEOUT_CPU=0.3), reads scaling out (bench/results/scaleout-latest.md)"
	@echo "  make bench-idle     build, memory per idle client + admin/query latency while idle (CLIENTS=150 POOL_MODE=session)"
	@echo "  make bench-ryw      build, reads right after writes: share on replicas, latency (bench/results/read_your_writes.md)"
	@echo "  make format         reformat the C++ sources with .clang-format (make test checks it)"
	@echo "  make build          configure ($(BUILD_DIR)/, $(MESON_BUILDTYPE)) and compile"
	@echo "  make deps           install missing Debian 12 packages (scripts/install_deps.sh)"
	@echo "  make cluster-start  start the test cluster in .cluster/ (tests/pg_cluster.sh)"
	@echo "  make cluster-stop   stop it and remove its data"
	@echo "  make clean          remove $(BUILD_DIR)/ and .run/"

deps:
	@bash scripts/install_deps.sh

build: deps
	@# meson's configure report is long: show it only when setup fails
	@if [ ! -f $(BUILD_DIR)/build.ninja ]; then \
	    log=$$(mktemp); rm -rf $(BUILD_DIR); \
	    echo "meson setup $(BUILD_DIR) --buildtype=$(MESON_BUILDTYPE)"; \
	    if ! meson setup $(BUILD_DIR) --buildtype=$(MESON_BUILDTYPE) >$$log 2>&1; then \
	        cat $$log; rm -f $$log; exit 1; \
	    fi; \
	    grep -E '^Build targets' $$log || true; rm -f $$log; \
	fi
	meson compile -C $(BUILD_DIR)

run: build
	bash scripts/run_local.sh

test: build
	bash tests/run_tests.sh

unit: build
	bash tests/run_tests.sh --unit

.PHONY: bench
bench: build
	bash bench/run_bench.sh

.PHONY: bench-callgrind bench-idle bench-ryw bench-scaleout
bench-callgrind: build
	bash bench/callgrind.sh

bench-scaleout: build
	bash bench/scaleout.sh

CLIENTS ?= 150
POOL_MODE ?= session
bench-idle: build
	/usr/bin/python3 bench/idle_clients.py --clients $(CLIENTS) --pool-mode $(POOL_MODE) --md bench/results/idle_clients.md

bench-ryw: build
	/usr/bin/python3 bench/read_your_writes.py

.PHONY: format
format: deps
	bash scripts/check_format.sh --fix

clean:
	rm -rf $(BUILD_DIR) .run

cluster-start:
	bash tests/pg_cluster.sh start

cluster-stop:
	bash tests/pg_cluster.sh stop

cluster-status:
	bash tests/pg_cluster.sh status
