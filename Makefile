# `make dev` runs the whole stack; `make test` runs the whole suite. Both set up .venv first.
# .venv's interpreter: the distribution's python3 when it is 3.11 or newer and can make a venv,
# else the first python3 on PATH. Debian builds its python3 with profile-guided optimisation and
# LTO; a version manager's default build (pyenv without --enable-optimizations) is neither. Same
# code, ten alternating pairs (bench/collab_results.md, "interpreters"): edits/s 2,569 -> 2,769
# (1 doc x 10 closed) and 4,395 -> 4,609 (50 files x 4 closed); server CPU per op 1,333 -> 1,216 us
# (50 files x 4 @ 2/s). Override: make dev PYTHON=...
SYSTEM_PYTHON := /usr/bin/python3
PYTHON ?= $(shell $(SYSTEM_PYTHON) -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && echo $(SYSTEM_PYTHON) || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv ui dev test lint pytest bench bench-ui migrate clean

# The web IDE (web/ui, TypeScript) is bundled by esbuild into web/static; npm ci installs
# exactly what web/ui/package-lock.json pins.
UI := web/ui
UI_DEPS := $(UI)/node_modules/.package-lock.json
UI_BUILT := web/static/manifest.json
NPM_HINT := npm is missing: apt-get install -y nodejs npm

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

$(UI_DEPS): $(UI)/package.json $(UI)/package-lock.json
	@command -v npm >/dev/null || { echo "$(NPM_HINT)"; exit 1; }
	npm ci --prefix $(UI) --no-audit --no-fund
	@touch $@

$(UI_BUILT): $(UI_DEPS) $(UI)/build.mjs $(UI)/tsconfig.json $(wildcard $(UI)/src/*)
	npm run --prefix $(UI) build

ui: $(UI_BUILT)

dev: venv ui
	$(BIN)/vaporform dev

migrate: venv
	$(BIN)/vaporform migrate

test: lint pytest

lint: venv $(UI_DEPS)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	npm run --prefix $(UI) --silent typecheck

pytest: venv ui
	$(BIN)/pytest

bench: venv
	$(BIN)/python bench/api_bench.py

bench-ui: venv ui
	$(BIN)/python bench/ui_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
