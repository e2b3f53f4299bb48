# `make build` then `make test`: everything a fresh checkout needs.
PYTHON ?= python3
PYTEST = $(PYTHON) -m pytest -q
# Tests and benchmarks import this checkout, wherever pip's editable link points.
export PYTHONPATH := $(CURDIR)

.PHONY: build deps test test-setup test-common test-gcs test-plasma test-raylet test-core \
        test-integration test-cli test-autoscaler test-fuzz test-chaos bench bench-vs-ray clean

# Bytecode too: every process of a node (GCS, raylet, store, workers) imports the
# project, and where PYTHONDONTWRITEBYTECODE is set nothing caches it otherwise
# (init() to first result: 0.75-0.8 s compiling each time, 0.5-0.55 s precompiled).
build: .build/deps.stamp
	$(PYTHON) setup.py -q build_ext --inplace
	$(PYTHON) -m compileall -q ray_common ray_gcs ray_plasma ray_raylet ray_core

deps: .build/deps.stamp

# The editable install is a path entry (compat mode), not an import hook placed after the
# path finder: with a hook, any folder named ray_core in the working directory (the
# default temp root /tmp/ray_core, run from /tmp) shadows the package as an empty
# namespace package.
.build/deps.stamp: pyproject.toml setup.py Makefile
	$(PYTHON) -m pip install -q "setuptools>=68" wheel "Cython>=3.0" "grpcio-tools>=1.60"
	$(PYTHON) -m pip install -q --no-build-isolation --config-settings editable_mode=compat -e ".[test]"
	mkdir -p .build && touch $@

test: build test-setup
	$(PYTEST) tests

# The multi-host test builds network namespaces with `ip` (iproute2); as root, install it
# when missing (CI images are often minimal).
# The dashboard's browser tests drive Debian's chromium through chromium-driver
# (tests/integration/test_dashboard.py skips them only where neither can be installed).
test-setup:
	@command -v ip >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
	    (apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null)
	@(command -v chromium && command -v chromedriver) >/dev/null 2>&1 || \
	    [ "$$(id -u)" != 0 ] || (apt-get update -qq && \
	    apt-get install -y -qq chromium chromium-driver >/dev/null)

test-common: build
	$(PYTEST) tests/common

test-gcs: build
	$(PYTEST) tests/gcs

test-plasma: build
	$(PYTEST) tests/plasma

test-raylet: build
	$(PYTEST) tests/raylet

test-core: build
	$(PYTEST) tests/core

test-integration: build test-setup
	$(PYTEST) tests/integration

test-cli: build test-setup
	$(PYTEST) tests/cli

test-autoscaler: build
	$(PYTEST) tests/autoscaler tests/integration/test_autoscaler.py tests/cli/test_cluster_files.py

# Bad input on every listening endpoint (gRPC servers, task socket, plasma socket,
# object transfer port, dashboard and metrics HTTP ports) of one real node: about 20 s.
test-fuzz: build
	$(PYTEST) tests/fuzz

# Processes SIGKILLed under a load (tests/chaos); `make test` runs it in its short mode.
# RAY_CORE_CHAOS_S=600 for the long mode (seconds of load over all scenarios).
test-chaos: build
	$(PYTEST) -s tests/chaos

bench: build
	$(PYTHON) -m benchmarks.run

# ray_core's microbenchmark rows beside ray==2.60.0 (installed once into .bench-venv).
bench-vs-ray: build
	$(PYTHON) -m benchmarks.bench_vs_ray

clean:
	rm -rf build .build ray_common/_generated *.egg-info
	find . -name '__pycache__' -prune -exec rm -rf {} +
	find ray_common ray_gcs ray_plasma ray_raylet ray_core \( -name '*.so' -o -name '*.c' -o -name '*.cpp' \) \
	    -not -path '*/csrc/*' -delete
