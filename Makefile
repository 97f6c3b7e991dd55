# The README's two commands are `make demo` and `make test`; everything else is a step of those.
# Every target installs what it needs into ./.venv, so a fresh machine needs only Rust and Python.

PYTHON      ?= python3
VENV        ?= .venv
VPY         := $(VENV)/bin/python
DEPS_STAMP  := $(VENV)/.deps-installed
CARGO_DIR   := rust_core
# The optional real Filecoin proofs backend (docs/filecoin-backend.md): its own crate, built into
# a target directory outside the clone so that later builds (and CI on the same machine) reuse it.
FILECOIN_DIR    := rust_filecoin
FILECOIN_TARGET ?= $(HOME)/.cache/sectorstorage/rust_filecoin-target
# Builds from several checkouts share that directory (the final .so has one name there), so each
# one holds a lock while it builds and installs: two checkouts never mix their builds.
FILECOIN_LOCK   := flock $(FILECOIN_TARGET).lock env CARGO_TARGET_DIR=$(FILECOIN_TARGET)
FILECOIN_CARGO  := $(FILECOIN_LOCK) cargo
# `make develop-filecoin FILECOIN_FEATURES=cuda` (or opencl): the proofs library's GPU code, off by
# default (it needs the CUDA toolkit / an OpenCL ICD to build).
FILECOIN_FEATURES ?=
FILECOIN_CACHE  := $(patsubst %/,%,$(dir $(FILECOIN_TARGET)))
comma       := ,

.PHONY: help venv develop develop-filecoin test-rust-filecoin test-rust-nvrtc lint-filecoin protos check-protos postgres browser test test-rust test-python lint fmt demo bench bench-fr32 bench-commp bench-porep bench-scheduler bench-failover bench-proofs clean

help:
	@echo "make demo   - build, start index + manager + workers locally, run the main job (DASHBOARD=1: and the dashboard, up until Ctrl-C)"
	@echo "make test   - cargo test + pytest (installs everything it needs)"
	@echo "make develop-filecoin - build rust_filecoin, the optional real Filecoin proofs backend (docs/filecoin-backend.md)"
	@echo "make protos - regenerate services/common/proto from protos/"
	@echo "make lint   - cargo fmt --check, cargo clippy -D warnings, ruff format --check, ruff check, mypy, stubtest (rust_core.pyi), the import rules (architecture.toml); the same for rust_filecoin (builds it)"
	@echo "make fmt    - cargo fmt and ruff format"
	@echo "make bench  - benchmark figures (see docs/benchmarks.md)"

# Long steps say what they do, keep their output in a log under .venv, and show it only when
# they fail (QUIET=0 shows everything).
QUIET ?= 1
define step
	@echo "==> $(1)"
	@if [ "$(QUIET)" = 1 ]; then \
		mkdir -p $(VENV); ( $(2) ) > $(VENV)/$(3).log 2>&1 || { tail -n 40 $(VENV)/$(3).log; echo "failed: see $(VENV)/$(3).log"; exit 1; }; \
	else $(2); fi
endef

$(VPY):
	@echo "==> creating $(VENV)"
	@$(PYTHON) -m venv $(VENV)

# Dependencies change only with pyproject.toml: install them once per change.
$(DEPS_STAMP): pyproject.toml | $(VPY)
	$(call step,installing Python dependencies into $(VENV) (first run: a minute or two),\
		$(VPY) -m pip install -q --upgrade pip && $(VPY) -m pip install -q "maturin>=1.7$(comma)<2" && $(VPY) -m pip install -q -e ".[test$(comma)dev$(comma)postgres]",install)
	@touch $@

venv: $(DEPS_STAMP)

# Rebuilds rust_core (incrementally) and installs the package into the venv in editable mode.
# (No --skip-install: with this layout it builds the wheel but leaves the old extension installed.)
develop: $(DEPS_STAMP)
	$(call step,building rust_core (release; first build: a few minutes),VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --release -q,build)

# The real proofs backend as the extension module rust_filecoin (first build: about 3 minutes on
# 2 cores; later builds reuse $(FILECOIN_TARGET)). Never part of `make develop` or `make demo`.
develop-filecoin: $(DEPS_STAMP) | $(FILECOIN_CACHE)
	$(call step,building rust_filecoin (real Filecoin proofs; first build: about 3 minutes),VIRTUAL_ENV=$(abspath $(VENV)) $(FILECOIN_LOCK) $(VENV)/bin/maturin develop --release -q -m $(FILECOIN_DIR)/Cargo.toml $(if $(FILECOIN_FEATURES),--features $(FILECOIN_FEATURES)),build-filecoin)

protos: $(DEPS_STAMP)
	$(VPY) scripts/gen_protos.py

check-protos: $(DEPS_STAMP)
	$(VPY) scripts/gen_protos.py --check

test-rust: test-rust-filecoin test-rust-nvrtc
	cd $(CARGO_DIR) && cargo test --release

# The CUDA compile check (rust_core/tests/nvrtc_compile.rs, docs/benchmarks.md): the kernels
# compiled by NVRTC to PTX and sm_80/sm_90 machine code, no GPU needed. libnvrtc comes from the
# nvidia-cuda-nvrtc-cu12 wheel in .venv (a test dependency in pyproject.toml); cudarc opens it by
# name, so through LD_LIBRARY_PATH. SECTORSTORAGE_REQUIRE_NVRTC=1 makes a missing library fail the
# tests instead of skipping them. Its own target directory: rust_core is also a cdylib, so its
# library file has no feature hash in its name, and a `cuda` build in rust_core/target would make
# the next plain `cargo test --release` rebuild every test binary (measured: 131 s each way round).
# First run about 55 s on 2 cores (cudarc and a second release build of the small dependencies),
# then 7 s.
# Outside the clone, like the Filecoin build, so that later runs on this machine reuse it; under a
# lock, since several checkouts share it.
NVRTC_TARGET ?= $(HOME)/.cache/sectorstorage/rust_core-nvrtc-target
test-rust-nvrtc: $(DEPS_STAMP) | $(FILECOIN_CACHE)
	@lib=$$($(VPY) -c 'import os, nvidia.cuda_nvrtc as m; print(os.path.join(list(m.__path__)[0], "lib"))') \
		|| { echo "nvidia-cuda-nvrtc-cu12 is not installed in $(VENV): run make venv"; exit 1; }; \
	echo "==> CUDA compile check with NVRTC from $$lib"; \
	cd $(CARGO_DIR) && LD_LIBRARY_PATH="$$lib$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}" SECTORSTORAGE_REQUIRE_NVRTC=1 \
		flock $(NVRTC_TARGET).lock env CARGO_TARGET_DIR=$(NVRTC_TARGET) cargo test --release --features cuda --test nvrtc_compile

# A 2 KiB sector through the real proofs; Groth16 parameters are generated once (about 17 minutes
# on 2 cores) into ~/.cache/sectorstorage/filecoin-params ($$SECTORSTORAGE_FIL_PARAMS) and reused.
test-rust-filecoin: | $(FILECOIN_CACHE)
	cd $(FILECOIN_DIR) && $(FILECOIN_CARGO) test --release

# PostgreSQL for the database tests (index, manager): the fixtures start a throwaway server from
# its binaries. Installed with apt-get when missing and we may (root or passwordless sudo), as in
# CI; otherwise those tests skip, saying why.
postgres:
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; \
	elif command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; \
	else echo "PostgreSQL is not installed and cannot be installed here: its tests will be skipped"; fi

# Headless Chromium and its driver for the dashboard's browser tests (tests/integration/web):
# Debian's chromium and chromium-driver, installed like PostgreSQL above; otherwise those tests
# skip, saying why. (About 40 s with apt-get on a warm mirror.)
browser:
	@if command -v chromedriver >/dev/null 2>&1 && { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	elif command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
		sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; \
	else echo "Chromium is not installed and cannot be installed here: the dashboard's browser tests will be skipped"; fi

test-python: develop develop-filecoin postgres browser
	$(VPY) -m pytest

test: lint test-rust test-python

lint: $(DEPS_STAMP) lint-filecoin
	cd $(CARGO_DIR) && cargo fmt --check
	cd $(CARGO_DIR) && cargo clippy --all-targets -- -D warnings
	cd $(CARGO_DIR) && cargo clippy --all-targets --features python -- -D warnings
	cd $(CARGO_DIR) && cargo clippy --all-targets --features cuda -- -D warnings
	$(VPY) -m ruff format --check services tests bench scripts
	$(VPY) -m ruff check services tests bench scripts
	$(VPY) -m mypy
	$(VPY) -m mypy.stubtest rust_core --allowlist stubtest_allowlist.txt
	$(VPY) scripts/check_imports.py

# rust_filecoin: rustfmt, clippy with and without the bindings, and its stub against the module.
$(FILECOIN_CACHE):
	mkdir -p $@

lint-filecoin: develop-filecoin
	cd $(FILECOIN_DIR) && cargo fmt --check
	cd $(FILECOIN_DIR) && $(FILECOIN_CARGO) clippy --release --all-targets -- -D warnings
	cd $(FILECOIN_DIR) && $(FILECOIN_CARGO) clippy --release --all-targets --features python -- -D warnings
	$(VPY) -m mypy.stubtest rust_filecoin --allowlist stubtest_allowlist_filecoin.txt

fmt: $(DEPS_STAMP)
	cd $(CARGO_DIR) && cargo fmt
	cd $(FILECOIN_DIR) && cargo fmt
	$(VPY) -m ruff format services tests bench scripts
	$(VPY) -m ruff check --fix services tests bench scripts

# DASHBOARD=1: also start the dashboard (docs/dashboard.md), print its URL, and keep the fleet up
# after the job until Ctrl-C.
demo: develop
	$(VPY) -m services.cli.demo $(if $(filter 1,$(DASHBOARD)),--dashboard)

# Each benchmark prints its figures and ratios against its baseline (bench/README.md);
# recorded results are in docs/benchmarks.md.
bench:
	@echo "benchmarks (figures in docs/benchmarks.md):"
	@echo "  make bench-fr32        fr32 pad/unpad vs memcpy and the fr32 crate"
	@echo "  make bench-commp       commP vs the SHA-256 limit; 1 GiB file peak RSS"
	@echo "  make bench-porep       PoRep labeling vs SHA-256 limit (8 sectors on the AVX-512VL lanes included); 2- and 8-sector PC1 batches vs single PC1s; sector pipeline (ARGS=\"--size 512MiB\", \"--pc1-batch-only\", \"--vl8-only\", \"--pc1-stop-only\": one sector of a batch stopped, the others resumed vs restarted)"
	@echo "  make bench-index       index FindSector/DeclareSector over gRPC vs the database"
	@echo "  make bench-worker      fetch between workers vs cp; AddPiece vs rust_core"
	@echo "  make bench-failover    manager failover time (kill -9 of the leader), 20 tries"
	@echo "  make bench-scheduler   scheduler placement with simulated workers"
	@echo "  make bench-proofs      PC1/PC2/C1/C2 wall, CPU, peak RSS: emulated vs filecoin (ARGS=\"--sizes 2KiB,8MiB,512MiB --unseal\")"

# rust_core hot paths against their limits (bench/README.md; figures in docs/benchmarks.md).
bench-fr32:
	cd bench/fr32 && cargo run --release -q

bench-commp:
	cd $(CARGO_DIR) && cargo run --release -q --example bench_commp

bench-porep:
	cd $(CARGO_DIR) && cargo run --release -q --example bench_porep -- $(ARGS)

# The index over gRPC against the same queries on the database (SQLite and PostgreSQL).
bench-index: develop
	$(VPY) -m bench.index $(ARGS)

# Sector file fetch between two workers against cp; AddPiece against rust_core's pad+commP.
bench-worker: develop
	$(VPY) bench/worker.py $(ARGS)

# The manager's scheduler with simulated workers (bench/README.md; figures in docs/benchmarks.md).
bench-scheduler: develop
	$(VPY) bench/scheduler.py $(ARGS)

# Manager failover: kill -9 of the leader to the first task done through the other (PostgreSQL).
bench-failover: develop postgres
	$(VPY) bench/failover.py $(ARGS)

# The two proofs backends side by side, each step in a fresh process (issue 21).
bench-proofs: develop develop-filecoin
	$(VPY) -m bench.proofs_backends $(ARGS)

clean:
	rm -rf $(VENV) $(CARGO_DIR)/target .pytest_cache .mypy_cache .demo
