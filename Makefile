# stillreel — `make serve` runs the server on the embedded default; `make test` runs the whole suite.
# Both set everything up first, on a fresh machine from a clean clone.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
DATA   ?= .stillreel

.PHONY: install install-test serve test system-deps postgres js-deps bench gpu-wheels clean

# The server and its CPU motion engine (no torch).
install: $(VENV)/.base
$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

# Everything the tests need: the diffusion extra (torch==2.13.0, CPU) and the test tools.
install-test: $(VENV)/.test
$(VENV)/.test: pyproject.toml $(VENV)/.base
	$(BIN)/pip install -q -e '.[test,diffusion]'
	touch $@

serve: install
	$(BIN)/stillreel serve --host $(HOST) --port $(PORT) --data-dir $(DATA)

# Debian packages the suite uses: ffmpeg (ffprobe, zoompan baseline), chromium (playground tests),
# postgresql (the scale-out queue), wrk (make bench). Installed only when missing.
system-deps:
	@scripts/system-deps.sh

postgres: system-deps
	@scripts/postgres.sh

js-deps:
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error

test: install-test system-deps postgres js-deps
	STILLREEL_TEST_DATABASE_URL=$${STILLREEL_TEST_DATABASE_URL:-postgresql://stillreel:stillreel@127.0.0.1:5432/stillreel_test} \
	  $(BIN)/python -m pytest -q -p no:cacheprovider

# The motion engine first (after the API runs, the load average was still 2.5 when it started),
# then the API: wrk against a raw ASGI app, a FastAPI route and stillreel side by side, on SQLite
# and on PostgreSQL (its tables are dropped first), each with 1 and 4 API processes. The first API
# run carries issue 13's goals: three rounds, medians (one 3 s round swings by ±20 %).
BENCH_DATABASE_URL ?= postgresql://stillreel:stillreel@127.0.0.1:5432/stillreel_test
bench: install-test system-deps postgres
	$(BIN)/python bench/motion.py
	$(BIN)/python bench/api.py --rounds 3
	$(BIN)/python bench/api.py --api-processes 4
	$(BIN)/python bench/api.py --database-url $(BENCH_DATABASE_URL)
	$(BIN)/python bench/api.py --database-url $(BENCH_DATABASE_URL) --api-processes 4

# Wheels the GPU machine lacks (diffusers, PyAV, ...) into .whl/, carried to it for bench/gpu.sh.
gpu-wheels:
	PYTHON=$(BIN)/python scripts/gpu-wheels.sh

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache
