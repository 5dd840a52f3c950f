# benchbed — two entry points (README):
#   make demo   installs what the demo needs into .venv (nothing system-wide but python3-venv) and runs it
#   make test   as root with apt-get, installs and starts what the tests need (scripts/ci-setup, the two images);
#               then installs the test toolchain into .venv, lints, type-checks and runs every test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Options for `benchbed demo` (e.g. --out DIR); it compares this host with the same process in fresh namespaces
# (plus a container when a Docker engine and the test image are there).
DEMO_ARGS ?=
# More extras on request: `make install EXTRAS=gpu` (NVML + the pinned torch), EXTRAS=gpu,parquet …
EXTRAS ?=
# `make test SETUP=no`: install nothing system-wide even as root (tests whose component is absent skip).
SETUP ?= auto
# The `local` target runs the agent with `python3` from PATH: make it the interpreter this Makefile installs into,
# so the bare-metal baseline has the same libraries (numpy, torch) as the tests and the demo expect.
export PATH := $(abspath $(BIN)):$(PATH)

comma := ,
# libvirt-python is an sdist compiled against libvirt: take the libvirt extra only where it can build, else say
# in one line what to install. Everything else the demo needs comes as wheels.
LIBVIRT_MISSING := $(shell sh scripts/libvirt-build-deps $(PYTHON))
OPTIONAL := $(if $(LIBVIRT_MISSING),,$(comma)libvirt)$(if $(EXTRAS),$(comma)$(EXTRAS))
USER_EXTRAS := ssh,docker$(OPTIONAL)
DEV_EXTRAS := dev,ssh,docker,parquet,history$(OPTIONAL)
# A stamp names the pyproject.toml and the extras it installed, so a new dependency or a newly buildable extra
# reinstalls. dev is a superset: its recipe writes the user stamp too, so `make demo` then `make test` upgrades
# the install and `make test` then `make demo` installs nothing.
KEY := $(shell sha256sum pyproject.toml | cut -c1-12)
USER_STAMP := $(VENV)/.user-$(KEY)-$(subst $(comma),+,$(USER_EXTRAS))
DEV_STAMP := $(VENV)/.dev-$(KEY)-$(subst $(comma),+,$(DEV_EXTRAS))
LIBVIRT_NOTE := libvirt target unavailable: apt-get install $(LIBVIRT_MISSING), then make install
# setuptools too: `pip wheel --no-build-isolation` (tests/integration/test_wheel.py) builds with the venv's own,
# which must read pyproject's SPDX license string (setuptools >= 77; a 3.11 venv starts with 65).

.PHONY: install dev demo stack-demo setup test lint typecheck unit bench clean

$(USER_STAMP): pyproject.toml constraints/stack.txt constraints/history.txt
	@sh scripts/make-venv $(PYTHON) $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools
	$(BIN)/python -m pip install -q -c constraints/stack.txt -c constraints/history.txt -e '.[$(USER_EXTRAS)]'
	@$(if $(LIBVIRT_MISSING),echo "$(LIBVIRT_NOTE)",true)
	@rm -f $(VENV)/.installed-* $(VENV)/.user-* && touch $@

$(DEV_STAMP): pyproject.toml constraints/stack.txt constraints/history.txt
	@sh scripts/make-venv $(PYTHON) $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools
	$(BIN)/python -m pip install -q -c constraints/stack.txt -c constraints/history.txt -e '.[$(DEV_EXTRAS)]'
	@$(if $(LIBVIRT_MISSING),echo "$(LIBVIRT_NOTE)",true)
	@rm -f $(VENV)/.installed-* $(VENV)/.user-* $(VENV)/.dev-* && touch $@ $(USER_STAMP)

install: $(USER_STAMP)

dev: $(DEV_STAMP)

demo: install
	$(BIN)/benchbed demo $(DEMO_ARGS)

# One stack (the default image) as bare metal (chroot) and as a container: ratios of the boundary alone.
# Root and a Docker engine (scripts/ci-setup starts one); scripts/stack-demo says in one line what is missing.
stack-demo: install
	BENCHBED=$(BIN)/benchbed bash scripts/stack-demo $(DEMO_ARGS)

# sshd, dockerd, libvirtd + QEMU, chromium, the libvirt build deps (scripts/ci-setup) and the registry-free
# container and VM images: what the integration tests need, idempotent, so `make test` is the whole story.
setup:
	@if [ "$(SETUP)" != no ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  PYTHON=$(PYTHON) bash scripts/ci-setup && bash scripts/build-test-image >/dev/null \
	    && bash scripts/build-vm-image >/dev/null; \
	else \
	  echo "make test: $(if $(filter no,$(SETUP)),SETUP=no,not root with apt-get), so nothing is installed system-wide (sshd, dockerd, libvirtd, chromium): tests whose component is absent skip"; \
	fi

# A second make, so the install sees what setup just installed (libvirt-python builds now).
test: setup
	@$(MAKE) --no-print-directory lint typecheck
	$(BIN)/python -m pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check benchbed tests benchmarks workloads
	$(BIN)/ruff format --check benchbed tests benchmarks workloads

typecheck: $(DEV_STAMP)
	$(BIN)/mypy benchbed

unit: $(DEV_STAMP)
	$(BIN)/python -m pytest tests/unit

bench: $(DEV_STAMP)
	$(BIN)/python benchmarks/bench_overhead.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
