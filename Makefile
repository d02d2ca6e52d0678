# keel: build, demo and test. `make help` lists the targets.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

CARGO ?= cargo
TEST_THREADS ?= 2
# Debian packages the demo and the integration tests need.
DEB_PACKAGES := busybox-static jq runc libseccomp-dev libc6-dev tmux containerd podman conmon uidmap
# Release builds are static musl binaries (Rust's musl target, added with
# rustup when missing; libseccomp.a from libseccomp-dev) and not PIE (no
# start-up relocations). musl, not glibc: glibc's start-up reads the CPU's
# cache layout with dozens of cpuid instructions, each a VM exit under a
# hypervisor (docs/performance.md). hack/release-target.sh falls back to the
# host's glibc triple (a dynamic build) when rustup cannot add the musl
# target; RELEASE_TARGET=<triple> chooses one. It is worked out once, and
# only by the targets that use it. crt-static goes only to an explicit
# --target: without --target, cargo would also apply it to build scripts and
# proc macros, which cannot be static.
RELEASE_TARGET ?= $(eval RELEASE_TARGET := $$(shell hack/release-target.sh))$(RELEASE_TARGET)
STATIC_RUSTFLAGS := -C target-feature=+crt-static -C relocation-model=static
RELEASE_RUSTFLAGS = $(if $(findstring -musl,$(RELEASE_TARGET)),$(STATIC_RUSTFLAGS))
RELEASE_BIN = target/$(RELEASE_TARGET)/release/keel
# Only libseccomp.a in it: the glibc directory on the link path would pull in
# glibc's libc.a instead of musl's.
SECCOMP_LIB_DIR := target/libseccomp-static
LEAK_SNAPSHOT := target/leakcheck.snapshot
# apt-get needs root; use sudo when make runs as another user.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: help deps build debug demo test test-v2 lint fmt clean bench client-tests client-tests-runc install

help:
	@echo 'make deps    install missing Debian packages ($(DEB_PACKAGES))'
	@echo 'make build   release build: $(RELEASE_BIN)'
	@echo 'make debug   debug build: target/debug/keel'
	@echo 'make demo    run a busybox container with the release build (root)'
	@echo 'make test    fmt, clippy, man pages, unit, integration and client tests (keel and runc) under leakcheck'
	@echo 'make test-v2 cgroup integration tests in a cgroup-v2-only qemu guest (root)'
	@echo 'make client-tests       containerd (ctr) and podman with keel as the runtime (root)'
	@echo 'make client-tests-runc  the same scenarios with runc as the runtime'
	@echo 'make install keel, man pages, completions under $$(DESTDIR)$$(PREFIX) (/usr/local)'
	@echo 'make lint    cargo fmt --check, clippy, man pages and completions generated, shell syntax'
	@echo 'make fmt     cargo fmt'
	@echo 'make clean   cargo clean, demo and test leftovers'
	@echo 'make bench   start-up benchmark against crun and runc (root, a few minutes)'

deps:
	@missing=(); \
	for pkg in $(DEB_PACKAGES); do \
		status=$$(dpkg -s "$$pkg" 2>/dev/null || true); \
		[[ $$status == *'Status: install ok installed'* ]] || missing+=("$$pkg"); \
	done; \
	if (( $${#missing[@]} )); then \
		echo "deps: installing $${missing[*]}"; \
		$(SUDO) apt-get update; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$${missing[@]}"; \
	fi; \
	command -v $(CARGO) >/dev/null || { echo "deps: $(CARGO) not found: install a Rust toolchain" >&2; exit 1; }

build:
	@mkdir -p $(SECCOMP_LIB_DIR)
	@cp -u /usr/lib/$$(gcc -print-multiarch)/libseccomp.a $(SECCOMP_LIB_DIR)/
	CARGO_TARGET_$(shell echo '$(RELEASE_TARGET)' | tr 'a-z-' 'A-Z_')_RUSTFLAGS='$(RELEASE_RUSTFLAGS)' \
		LIBSECCOMP_LIB_PATH='$(CURDIR)/$(SECCOMP_LIB_DIR)' \
		$(CARGO) build --release --target $(RELEASE_TARGET)

debug:
	$(CARGO) build

# A throwaway bundle and state root under $TMPDIR, removed afterwards; the
# container prints its hostname, its pid (1) and its mount table.
demo: deps build
	@tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/keel-demo.XXXXXX"); \
	id=demo-$$(od -An -N4 -tx4 /dev/urandom | tr -d ' \n'); \
	keel=("$(CURDIR)/$(RELEASE_BIN)" --root "$$tmp/state"); \
	cleanup() { \
		"$${keel[@]}" delete --force "$$id" >/dev/null 2>&1 || true; \
		if grep -qE " $$tmp(/| )" /proc/self/mountinfo; then \
			echo "demo: mounts left under $$tmp; not removing it" >&2; \
		else \
			rm -rf "$$tmp"; \
		fi; \
	}; \
	trap cleanup EXIT; \
	KEEL="$(CURDIR)/$(RELEASE_BIN)" hack/mkbundle.sh "$$tmp/bundle" \
		sh -c 'echo "hostname: $$(hostname)"; echo pid $$$$; cat /proc/self/mounts'; \
	jq '.hostname = "keel-demo"' "$$tmp/bundle/config.json" >"$$tmp/config.json"; \
	mv "$$tmp/config.json" "$$tmp/bundle/config.json"; \
	echo "demo: $${keel[*]} run --bundle $$tmp/bundle $$id"; \
	"$${keel[@]}" run --bundle "$$tmp/bundle" "$$id"

# The man pages and completions of `make install`, generated into $(GEN_DIR)
# (afresh, so that stale files cannot hide a broken generator) and checked:
# a page for keel and for every subcommand that `keel --help` lists, and
# non-empty bash, zsh and fish completions.
GEN_DIR := target/gen
define GEN_DOCS_CHECK
	rm -rf $(GEN_DIR)
	$(CARGO) run -q --manifest-path xtask/Cargo.toml --target-dir target/xtask -- gen-docs $(GEN_DIR) >/dev/null
	$(CARGO) build -q
	@missing=(); \
	for page in keel $$(target/debug/keel --help | sed -n '/^Commands:/,/^$$/{s/^  \([a-z][a-z-]*\) .*/keel-\1/p}' | grep -vx keel-help); do \
		grep -q '^\.TH' "$(GEN_DIR)/man/$$page.8" 2>/dev/null || missing+=("man/$$page.8"); \
	done; \
	for c in keel.bash _keel keel.fish; do [[ -s $(GEN_DIR)/completions/$$c ]] || missing+=("completions/$$c"); done; \
	if (( $${#missing[@]} )); then echo "gen-docs: missing or empty in $(GEN_DIR): $${missing[*]}" >&2; exit 1; fi; \
	echo "gen-docs: $$(ls $(GEN_DIR)/man | wc -l) man pages and 3 completions in $(GEN_DIR)"
endef

# Integration tests need root (they skip without it) and run between two
# leakcheck snapshots: a run that leaves mounts, cgroups, state, processes
# or changed device nodes behind fails even when every test passed.
# The suites run twice: on the debug build (debug assertions) and on the
# release build that users install (musl, static, its own allocator); the
# client scenarios run with keel and then with runc (which checks them).
test: deps build
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(GEN_DOCS_CHECK)
	$(CARGO) test --lib
	hack/leakcheck.sh snapshot $(LEAK_SNAPSHOT)
	@rc=0; \
	$(CARGO) test --no-fail-fast --test '*' -- --test-threads=$(TEST_THREADS) || rc=$$?; \
	echo "== the integration tests again, on the release build $(RELEASE_BIN)"; \
	KEEL_TEST_BIN='$(CURDIR)/$(RELEASE_BIN)' $(CARGO) test --no-fail-fast --test '*' -- \
		--test-threads=$(TEST_THREADS) || { [[ $$rc -ne 0 ]] || rc=1; }; \
	hack/client-tests.sh $(RELEASE_BIN) || { [[ $$rc -ne 0 ]] || rc=1; }; \
	echo "== the client scenarios again, with runc as the runtime (checks the scenarios)"; \
	hack/client-tests.sh runc || { [[ $$rc -ne 0 ]] || rc=1; }; \
	hack/compare-runc.sh $(RELEASE_BIN) || { [[ $$rc -ne 0 ]] || rc=1; }; \
	hack/test-v2.sh || { [[ $$rc -ne 0 ]] || rc=1; }; \
	hack/leakcheck.sh check $(LEAK_SNAPSHOT) || { [[ $$rc -ne 0 ]] || rc=1; }; \
	exit $$rc

# The cgroup integration tests (tests/cgroup*.rs) and the features document's
# cgroup claims (tests/features.rs cgroup_claims) again, in a qemu guest whose
# only cgroup hierarchy is v2; hack/vm.sh installs qemu and caches a Debian
# kernel. `make test` runs it too: no qemu is a failure, not a skip.
test-v2: deps
	hack/test-v2.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	bash -n hack/*.sh .ci/run
	$(GEN_DOCS_CHECK)
	@if command -v shellcheck >/dev/null; then shellcheck hack/*.sh .ci/run; fi

fmt:
	$(CARGO) fmt

clean:
	$(CARGO) clean
	@rootfs="$${TMPDIR:-/tmp}/keel-test-rootfs"; \
	if grep -qE " $$rootfs(/| )" /proc/self/mountinfo; then \
		echo "clean: mounts under $$rootfs; not removing it" >&2; \
	else \
		rm -rf "$$rootfs"; \
	fi

# containerd (through ctr and the runc shim) and podman (through conmon),
# each private to a temp dir, with keel as the runtime; `make test` runs it
# too. client-tests-runc runs the same scenarios with runc, to check them.
client-tests: deps debug
	hack/client-tests.sh target/debug/keel

client-tests-runc: deps
	hack/client-tests.sh runc

# keel, its man pages (keel(8), keel-COMMAND(8)) and bash/zsh/fish
# completions. The pages and completions are generated from the clap
# definitions by xtask/, a package of its own, so that clap_mangen and
# clap_complete are build tools only and never dependencies of keel.
PREFIX ?= /usr/local
install: build
	$(CARGO) run --manifest-path xtask/Cargo.toml --target-dir target/xtask -- gen-docs $(GEN_DIR)
	install -Dm755 $(RELEASE_BIN) $(DESTDIR)$(PREFIX)/bin/keel
	install -d $(DESTDIR)$(PREFIX)/share/man/man8
	install -m644 $(GEN_DIR)/man/*.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -Dm644 $(GEN_DIR)/completions/keel.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/keel
	install -Dm644 $(GEN_DIR)/completions/_keel $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_keel
	install -Dm644 $(GEN_DIR)/completions/keel.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/keel.fish

# Not part of `make test`: times keel against crun and runc (hack/bench.sh
# installs what it needs) and refreshes docs/performance.md.
bench: build
	hack/bench.sh $(RELEASE_BIN)
