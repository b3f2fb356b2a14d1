# alertpipe — `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-fast lint bench run emulate clean reliability

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

## reliability: the fault suite at scale (x10 messages and SIGKILLs; `make test` runs it x1);
## prints the table and writes bench/results/reliability.md
reliability: venv
	ALERTPIPE_RELIABILITY_SCALE=$${ALERTPIPE_RELIABILITY_SCALE:-10} \
	  $(BIN)/python -m pytest tests/reliability -s

## bench: a burst of 1,000 orders (Sheets calls, quota) and sustained intake measured with wrk
bench: venv
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) \
	  || echo "wrk could not be installed; the sustained-intake phase will be skipped"
	$(BIN)/python bench/burst.py --orders 1000 --concurrency 32 --wrk-seconds 10

run: venv
	$(BIN)/alertpipe run

emulate: venv
	$(BIN)/alertpipe emulate --write-credentials data/emulator-service-account.json

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
