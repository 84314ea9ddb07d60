# Two entry points: `make demo` and `make test`. Both set up what they need, idempotently.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest mosquitto postgresql node tools cc zbar browser dashboard bundle venv clean
MP_TESTS := tests/micropython
DASH := dashboard
ATT := attendant

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

# Debian's mosquitto binary; the demo and tests start private instances of it, never the system one.
mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || test -x /usr/sbin/mosquitto; then \
		exit 0; \
	elif [ "$$(id -u)" = "0" ]; then \
		echo "installing Debian's mosquitto"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	else \
		echo "mosquitto is missing; run: sudo apt-get install mosquitto" >&2; exit 1; \
	fi

# Debian's PostgreSQL binaries (initdb, postgres) for headquarters' ledger; the demo, tests and
# benchmarks start private instances in temporary directories, never the system cluster.
postgresql:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		exit 0; \
	elif [ "$$(id -u)" = "0" ]; then \
		echo "installing Debian's postgresql"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else \
		echo "PostgreSQL is missing; run: sudo apt-get install postgresql" >&2; exit 1; \
	fi

# Node.js runs the MicroPython WebAssembly interpreter for the firmware tests.
node:
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
		exit 0; \
	elif [ "$$(id -u)" = "0" ]; then \
		echo "installing Debian's nodejs and npm"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	else \
		echo "node is missing (MicroPython tests will skip); run: sudo apt-get install nodejs npm" >&2; \
	fi

# shellcheck for the deployment scripts' tests (they skip, and say so, without it).
tools:
	@if command -v shellcheck >/dev/null 2>&1; then exit 0; \
	elif [ "$$(id -u)" = "0" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null; \
	else echo "shellcheck is missing (its test will skip); run: sudo apt-get install shellcheck" >&2; fi

# A C compiler: the SD-wear benchmark builds its small fsync-counting LD_PRELOAD shim (its test skips without).
cc:
	@if command -v cc >/dev/null 2>&1; then exit 0; \
	elif [ "$$(id -u)" = "0" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null; \
	else echo "cc is missing (the wear benchmark's test will skip); run: sudo apt-get install gcc" >&2; fi

# Debian's libzbar0 for pyzbar, a baseline in the camera benchmark (its test skips without it).
zbar:
	@if ldconfig -p 2>/dev/null | grep -q libzbar.so.0; then exit 0; \
	elif [ "$$(id -u)" = "0" ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libzbar0 >/dev/null; \
	else echo "libzbar0 is missing (the camera benchmark's pyzbar baseline will skip); run: sudo apt-get install libzbar0" >&2; fi

# Debian's Chromium for the dashboard's browser tests (Playwright drives it; no browser download).
browser:
	@if command -v chromium >/dev/null 2>&1; then exit 0; \
	elif [ "$$(id -u)" = "0" ]; then \
		echo "installing Debian's chromium"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium is missing (browser tests will skip); run: sudo apt-get install chromium" >&2; fi

# The manager's dashboard: MQTT.js and the signing library from npm, bundled into one script.
$(DASH)/www/vendor/spbu-vendor.js: $(DASH)/package-lock.json $(DASH)/src/vendor.js
	@if command -v npm >/dev/null 2>&1; then \
		cd $(DASH) && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build; fi

# The attendant's page: MQTT.js and zxing-cpp's WebAssembly reader (npm zxing-wasm), bundled,
# the .wasm copied beside the bundle (served by the station, never a CDN).
$(ATT)/www/vendor/attendant-vendor.js: $(ATT)/package-lock.json $(ATT)/src/vendor.js $(ATT)/src/copy-wasm.js
	@if command -v npm >/dev/null 2>&1; then \
		cd $(ATT) && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build; fi

dashboard: node
	@$(MAKE) --no-print-directory $(DASH)/www/vendor/spbu-vendor.js $(ATT)/www/vendor/attendant-vendor.js

# Offline bundle for stations without internet: wheels for arm64 (Pi) and x86_64, the
# project itself, and the install script. Copy dist/bundle to the Pi and run
# deploy/install.sh --bundle <dir>.
bundle: $(STAMP)
	rm -rf dist/bundle && mkdir -p dist/bundle
	$(BIN)/pip wheel --quiet --no-deps -w dist/bundle .
	for plat in manylinux2014_aarch64 manylinux2014_x86_64; do \
		$(BIN)/pip download --quiet --only-binary=:all: --platform $$plat --python-version 3.11 \
			-d dist/bundle "paho-mqtt>=2.1" "pyserial>=3.5" "cryptography>=42" "jsonschema>=4.21" "gpiozero>=2.0"; \
	done
	cp -r deploy dist/bundle/
	$(MAKE) --no-print-directory dashboard && mkdir -p dist/bundle/dashboard && cp -r $(DASH)/www/. dist/bundle/dashboard/
	mkdir -p dist/bundle/attendant && cp -r $(ATT)/www/. dist/bundle/attendant/
	@echo "bundle in dist/bundle: $$(ls dist/bundle | wc -l) files"

$(MP_TESTS)/node_modules/.package-lock.json: $(MP_TESTS)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then cd $(MP_TESTS) && npm ci --no-audit --no-fund --loglevel=error; fi

demo: $(STAMP) mosquitto postgresql dashboard
	$(BIN)/spbu demo $(DEMO_ARGS)

# MicroPython's own stubs (rp2 port + its reduced stdlib), kept out of the venv's
# site-packages so they never shadow CPython's typeshed in the main mypy run.
MPY_STUBS := $(VENV)/mpy-stubs
$(MPY_STUBS)/.installed: $(STAMP) Makefile
	$(BIN)/python -m pip install --quiet --upgrade --target $(MPY_STUBS) \
		"micropython-rp2-rpi-pico-stubs>=1.24" "micropython-stdlib-stubs>=1.24"
	@touch $@

# ruff, then the architecture's import contracts (pyproject.toml [tool.importlinter]).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# CPython (strict for agent/, hal/, hq/), then the firmware and codecs against MicroPython's stubs.
typecheck: $(STAMP) $(MPY_STUBS)/.installed
	$(BIN)/mypy
	$(BIN)/mypy --config-file mypy-micropython.ini

pytest: $(STAMP) mosquitto postgresql node tools cc zbar browser dashboard
	@$(MAKE) --no-print-directory $(MP_TESTS)/node_modules/.package-lock.json
	$(BIN)/pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
