# `make dev` runs the whole stack; `make test` runs the whole suite. Both set up .venv first.
PYTHON ?= python3
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
