# alertpipe — `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-fast lint run emulate clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

## demo: the order alert pipeline against the local Google and Twilio emulators
demo: venv
	$(BIN)/alertpipe demo

## test: the whole suite (unit, contract, end-to-end over real sockets)
test: venv
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "not e2e"

lint: venv
	$(BIN)/ruff check src tests
	$(BIN)/mypy

run: venv
	$(BIN)/alertpipe run

emulate: venv
	$(BIN)/alertpipe emulate --write-credentials data/emulator-service-account.json

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
