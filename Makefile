# edgemq: build, test and cross-compile entry points (GNU make). `make` lists the targets.
# Cross builds use Debian's cross gcc + rustup targets + qemu-user (README.md, "Build for your gateway"); the tools
# are installed by cross/setup.sh and cross/setup-musl.sh, which do nothing when all is present.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO   ?= cargo
NIGHTLY ?= nightly
# What ships to gateways (Cargo.toml [profile.release-small]).
PROFILE := release-small

ARMV7        := armv7-unknown-linux-gnueabihf
AARCH64      := aarch64-unknown-linux-gnu
ARMV7_MUSL   := armv7-unknown-linux-musleabihf
AARCH64_MUSL := aarch64-unknown-linux-musl

# Same commands as the runners in .cargo/config.toml. binfmt_misc cannot be assumed, so the
# integration tests put EDGEMQ_TEST_RUNNER in front of the broker binary they spawn.
QEMU_$(ARMV7)   := qemu-arm -L /usr/arm-linux-gnueabihf
QEMU_$(AARCH64) := qemu-aarch64 -L /usr/aarch64-linux-gnu
# qemu-user is ~5x slower than native, ~18x on SQLite-heavy work.
CROSS_TIMEOUT_SCALE := 10

# What the integration tests drive besides the broker (Debian package names).
# mosquitto: the bridge tests' remote (/usr/sbin/mosquitto, started by the tests on free ports),
# tests/auth.rs's mosquitto_passwd, and `make bench`. On systemd hosts the package starts a
# service on port 1883, the port `make run` wants: when `deps` installs it, it stops and
# disables that service (a Mosquitto service that was there before is left alone).
# python3-fusepy and fuse3 (fusermount): the power-cut test's file system (tests/powercut/lossyfs.py).
# curl and python3-prometheus-client: tests/monitoring.rs reads /metrics and /health with curl
# and parses /metrics with prometheus_client's text parser.
# chromium: tests/status_page.rs loads the status page in headless Chromium.
# nodejs and npm: MQTT.js for the WebSocket tests (tests/websocket.rs), installed from npm with
# the lock file into tests/clients/node/node_modules by `deps` (npm ci). Keep them last and
# together: `deps` leaves them out when a Node is already installed.
TEST_PKGS := mosquitto mosquitto-clients python3-paho-mqtt python3-fusepy fuse3 curl python3-prometheus-client \
             chromium nodejs npm
NODE_CLIENTS := tests/clients/node

.PHONY: help run build test test-ws deps lint cross-setup cross-armv7 cross-aarch64 cross-test \
        musl-aarch64 musl-armv7 dist dist-musl sizes bench bench-compare clean powercut-selfcheck \
        fuzz-smoke fuzz-seeds

help: ## List the targets
	@echo "Usage: make TARGET"
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

run: ## Run the broker with conf/edgemq.toml (127.0.0.1:1883, data in ./data)
	$(CARGO) run --release -- --conf conf/edgemq.toml

build: ## Native release build (target/release/edgemq)
	$(CARGO) build --release

test: deps ## Whole test suite, native (checks `deps` first)
	$(CARGO) test --workspace

# The suites written for TCP, again with every client over WebSockets (tests/common: each
# broker gets a ws listener, each TestClient connects to it). tests/websocket.rs has the rest.
WS_SUITES := conformance_v3 conformance_v5 persistence malformed flow_control
test-ws: ## Conformance, persistence, malformed and flow-control suites over ws://
	EDGEMQ_TEST_TRANSPORT=ws $(CARGO) test $(addprefix --test ,$(WS_SUITES))

# Checks first; installs only when something is missing (root + apt-get), otherwise says what to
# install. Without CI=true a missing client is a warning: the tests that need it skip.
deps: ## Check/install test prerequisites: mosquitto (bridge remote), mosquitto-clients, python3-paho-mqtt, python3-fusepy, fuse3, curl, python3-prometheus-client, chromium, nodejs+npm (MQTT.js)
	@check() { \
	    missing=(); \
	    command -v mosquitto_pub >/dev/null || missing+=(mosquitto_pub); \
	    command -v mosquitto_sub >/dev/null || missing+=(mosquitto_sub); \
	    [ -x /usr/sbin/mosquitto ] || missing+=(/usr/sbin/mosquitto); \
	    /usr/bin/python3 -c 'import paho.mqtt' 2>/dev/null || missing+=("python3 module paho.mqtt"); \
	    /usr/bin/python3 -c 'import fusepy' 2>/dev/null || missing+=("python3 module fusepy"); \
	    command -v fusermount >/dev/null || missing+=(fusermount); \
	    command -v curl >/dev/null || missing+=(curl); \
	    /usr/bin/python3 -c 'import prometheus_client.parser' 2>/dev/null || missing+=("python3 module prometheus_client"); \
	    command -v chromium >/dev/null || missing+=(chromium); \
	    command -v node >/dev/null || missing+=(node); \
	    command -v npm >/dev/null || missing+=(npm); \
	    [ -f $(NODE_CLIENTS)/node_modules/mqtt/package.json ] || missing+=("MQTT.js in $(NODE_CLIENTS)"); \
	}; \
	check; \
	if [ $${#missing[@]} -gt 0 ] && [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then \
	    echo "deps: missing: $${missing[*]}; installing $(TEST_PKGS)"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    had_mosquitto=$$([ -x /usr/sbin/mosquitto ] && echo yes || true); \
	    pkgs="$(TEST_PKGS)"; \
	    if command -v node >/dev/null && command -v npm >/dev/null; then \
	        pkgs="$${pkgs/nodejs npm/}"; \
	    fi; \
	    apt-get update -qq && apt-get install -y $$pkgs; \
	    if [ -z "$$had_mosquitto" ] && command -v systemctl >/dev/null \
	            && systemctl is-enabled --quiet mosquitto 2>/dev/null; then \
	        systemctl disable --now mosquitto \
	            && echo "deps: stopped and disabled the mosquitto service the package started (port 1883 stays free for make run)"; \
	    fi; \
	    check; \
	fi; \
	if [ ! -f $(NODE_CLIENTS)/node_modules/mqtt/package.json ] && command -v npm >/dev/null; then \
	    echo "deps: installing MQTT.js into $(NODE_CLIENTS) (npm ci, package-lock.json)"; \
	    (cd $(NODE_CLIENTS) && npm ci --no-audit --no-fund) && check; \
	fi; \
	if [ $${#missing[@]} -gt 0 ]; then \
	    echo "deps: missing: $${missing[*]}"; \
	    echo "deps: install the Debian packages $(TEST_PKGS):"; \
	    echo "  sudo apt-get install -y $(TEST_PKGS)"; \
	    if [ "$${CI:-}" = true ]; then echo "deps: CI=true: missing test prerequisites are an error" >&2; exit 1; fi; \
	    echo "deps: the tests that need them will skip"; \
	fi

# The power-cut test must catch a broker that acknowledges before its write-ahead log is durable:
# build one (test-only feature, own target dir so target/debug/edgemq stays the real one) and
# expect tests/powercut.rs to fail against it, for the reason it exists. Needs root and FUSE.
SELFCHECK_DIR := target/selfcheck
powercut-selfcheck: deps ## Show the power-cut test fails against a broker without the WAL fsync
	$(CARGO) build --features fault-skip-wal-fsync --bin edgemq --target-dir $(SELFCHECK_DIR)
	@log=$(SELFCHECK_DIR)/powercut.log; \
	if CI=true EDGEMQ_BIN=$(CURDIR)/$(SELFCHECK_DIR)/debug/edgemq EDGEMQ_POWERCUT_CUTS=5 \
	    $(CARGO) test --test powercut -- --exact power_cuts_lose_no_acknowledged_message_in_sync_mode \
	    >"$$log" 2>&1; then \
	    cat "$$log"; echo "powercut-selfcheck: FAILED: the power-cut test passed without the WAL fsync" >&2; exit 1; \
	elif grep -q 'acknowledged messages lost in power cuts' "$$log"; then \
	    grep -E '^powercut .*cuts,|lost, e\.g\.' "$$log" | cut -c1-160; \
	    echo "powercut-selfcheck: OK: without the WAL fsync the power-cut test fails (log: $$log)"; \
	else \
	    cat "$$log"; echo "powercut-selfcheck: FAILED: the power-cut test failed for another reason" >&2; exit 1; \
	fi

lint: ## rustfmt check + clippy (warnings are errors)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

cross-setup: ## Install cross gcc, qemu-user and rustup targets (no-op when present)
	cross/setup.sh

cross-armv7: cross-setup ## Raspberry Pi OS 32-bit / armv7 glibc, release-small
	$(CARGO) build --profile $(PROFILE) --target $(ARMV7)

cross-aarch64: cross-setup ## Raspberry Pi OS 64-bit / aarch64 glibc, release-small
	$(CARGO) build --profile $(PROFILE) --target $(AARCH64)

# Unit tests run as ARM binaries under qemu-user. The end-to-end tests are black-box: the host
# test driver starts the ARM broker under qemu-user. (Running the multi-threaded driver itself
# under qemu made its fork+exec of clients and brokers hang now and then: qemu-user and fork.)
define cross_test
	$(CARGO) test --target $(1) --lib --bins
	$(CARGO) build --target $(1) --bin edgemq
	EDGEMQ_BIN=$(CURDIR)/target/$(1)/debug/edgemq EDGEMQ_TEST_RUNNER="$(QEMU_$(1))" \
	    EDGEMQ_TEST_TIMEOUT_SCALE=$(CROSS_TIMEOUT_SCALE) $(CARGO) test --test '*'
endef

cross-test: cross-setup deps ## Whole test suite for armv7 and aarch64 under qemu-user
	$(call cross_test,$(ARMV7))
	$(call cross_test,$(AARCH64))

musl-aarch64: ## OpenWrt aarch64: static musl, release-small (stable)
	cross/setup-musl.sh aarch64
	$(CARGO) build --profile $(PROFILE) --target $(AARCH64_MUSL)

# rustup serves no std for armv7 musl here, so std is rebuilt with nightly -Zbuild-std. Without a
# rustup std there are no self-contained crt objects either: link against Debian's musl
# (link-self-contained=no). That std links a static libunwind; gcc's libgcc_eh.a provides it.
UNWIND_ARMHF := $(CURDIR)/target/unwind-armhf
musl-armv7: ## OpenWrt armv7: static musl, release-small (nightly -Zbuild-std)
	NIGHTLY=$(NIGHTLY) cross/setup-musl.sh armv7
	mkdir -p $(UNWIND_ARMHF)
	ln -sf "$$(arm-linux-gnueabihf-gcc -print-file-name=libgcc_eh.a)" $(UNWIND_ARMHF)/libunwind.a
	CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_RUSTFLAGS="-C link-self-contained=no -L $(UNWIND_ARMHF)" \
	    $(CARGO) +$(NIGHTLY) build -Zbuild-std=std,panic_abort --profile $(PROFILE) --target $(ARMV7_MUSL)

dist: cross-armv7 cross-aarch64 ## Tarballs for the glibc targets under dist/
	cross/dist.sh $(PROFILE) $(ARMV7) $(AARCH64)

dist-musl: musl-aarch64 musl-armv7 ## Tarballs for the musl (OpenWrt) targets under dist/
	cross/dist.sh $(PROFILE) $(AARCH64_MUSL) $(ARMV7_MUSL)

# The armv7 binary is also built without TLS (only the `websocket` feature) and kept beside the
# shipped one as edgemq.no-tls, so the table shows what TLS costs. Same target dir: the
# dependencies are shared, only edgemq and the TLS crates differ.
sizes: cross-setup cross-aarch64 build ## Markdown table of stripped binary sizes (armv7 with and without TLS)
	$(CARGO) build --profile $(PROFILE) --target $(ARMV7) --no-default-features --features websocket
	cp target/$(ARMV7)/$(PROFILE)/edgemq target/$(ARMV7)/$(PROFILE)/edgemq.no-tls
	$(CARGO) build --profile $(PROFILE) --target $(ARMV7)
	strip -o target/release/edgemq.stripped target/release/edgemq
	cross/sizes.sh target/$(ARMV7)/$(PROFILE)/edgemq target/$(ARMV7)/$(PROFILE)/edgemq.no-tls \
	    target/$(AARCH64)/$(PROFILE)/edgemq target/release/edgemq.stripped

bench: ## Every benchmark scenario vs Mosquitto, then offline enqueue on slow storage (benches/README.md)
	@if ! [ -x "$${MOSQUITTO:-/usr/sbin/mosquitto}" ]; then \
	    if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then \
	        echo "bench: installing mosquitto (the broker compared against)"; \
	        DEBIAN_FRONTEND=noninteractive apt-get install -y mosquitto; \
	    else \
	        echo "bench: Mosquitto is needed: sudo apt-get install -y mosquitto" >&2; exit 1; \
	    fi; \
	fi
	benches/run.sh
	benches/slow-storage.sh

bench-compare: bench ## Same as bench: every run compares with Mosquitto in the same run

# Fuzzing (fuzz/README.md). libFuzzer through cargo-fuzz, without a sanitizer: the crate
# forbids unsafe code and ASan would not instrument the bundled SQLite C code anyway, so a
# sanitizer only doubles the time; panics, overflows (debug assertions are on), timeouts and
# memory blow-ups are what the targets catch. That also lets it run on the stable toolchain.
FUZZ_SECONDS   ?= 20
FUZZ_TARGETS   ?= decode topic auth_files broker_sequence websocket
FUZZ_FLAGS     ?= --sanitizer none
# Per-input limits: a run slower than 10 s or using more than 2 GiB is a finding too.
FUZZ_LIBFUZZER ?= -timeout=10 -rss_limit_mb=2048 -print_final_stats=1

fuzz-smoke: ## Each fuzz target for FUZZ_SECONDS (default 20) from the seed corpus; installs cargo-fuzz
	@command -v cargo-fuzz >/dev/null || { \
	    echo "fuzz-smoke: installing cargo-fuzz (crates.io)"; \
	    $(CARGO) install cargo-fuzz --locked --debug; \
	}
	cd fuzz && $(CARGO) fuzz build $(FUZZ_FLAGS)
	@cd fuzz && for target in $(FUZZ_TARGETS); do \
	    mkdir -p corpus/$$target; \
	    log=target/fuzz-smoke-$$target.log; \
	    echo "fuzz-smoke: $$target for $(FUZZ_SECONDS) s (log: fuzz/$$log)"; \
	    if ! $(CARGO) fuzz run $(FUZZ_FLAGS) $$target corpus/$$target seeds/$$target -- \
	            -max_total_time=$(FUZZ_SECONDS) $(FUZZ_LIBFUZZER) >$$log 2>&1; then \
	        grep -A2 'panicked at' $$log | head -n 6 || true; \
	        grep -v '^INFO:' $$log | tail -n 25; \
	        echo "fuzz-smoke: $$target FAILED; the input is in fuzz/artifacts/$$target/" >&2; \
	        exit 1; \
	    fi; \
	    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|^Done ' $$log | sed 's/^/  /'; \
	done

fuzz-seeds: ## Rewrite fuzz/seeds/ from the codec's test vectors and the scripted sessions
	cd fuzz && $(CARGO) run --example seed_corpus

clean: ## Remove target/ and dist/
	$(CARGO) clean
	rm -rf dist
