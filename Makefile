# alertpipe — `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: screenshots venv demo test test-fast lint bench run emulate clean reliability browser nginx

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

## browser: Debian's chromium, which Playwright drives headless in tests/browser (the dashboard);
## installed with apt-get when missing (through sudo when not root). Never `playwright install`.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; \
	  elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	  else echo "browser: chromium is missing; install it: apt-get install -y chromium" >&2; exit 2; fi; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { echo "browser: chromium did not install" >&2; exit 2; }

## nginx: Debian's nginx, which tests/e2e/test_nginx.py starts unprivileged (its own prefix and
## port) in front of two engines, as docs/scaling.md shows; apt-get installs it when missing
## (as root, or through passwordless sudo). Otherwise that test is skipped, saying why; with
## CI=true a missing nginx fails here. (Debian's package also enables its own service on :80.)
nginx:
	@PATH="$$PATH:/usr/sbin:/sbin"; command -v nginx >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	  else SUDO=none; fi; \
	  if [ "$$SUDO" != none ]; then \
	    $$SUDO apt-get update -qq && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; \
	  fi; }; \
	command -v nginx >/dev/null 2>&1 || { \
	  echo "nginx: not installed and no root or passwordless sudo to install it" \
	       "(apt-get install -y nginx); the nginx test will be skipped" >&2; \
	  [ "$${CI:-}" != true ] || exit 2; }

## test: the whole suite (unit, contract, end-to-end over real sockets, the dashboard in chromium,
## two engines behind nginx)
test: venv browser nginx
	$(BIN)/python -m pytest -q

## screenshots: the browser tests, saving docs/img/*.png for docs/dashboard.md
screenshots: venv browser
	ALERTPIPE_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/browser

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

## bench: ceiling vs engine side by side (throughput, latency, CPU/msg, RSS), p99 at half rate,
## 10,000 orders end to end; writes bench/results/latest.{md,json,png} (about 5 minutes)
bench: venv
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	command -v wrk >/dev/null || { echo "bench: wrk is required (apt-get install -y wrk)"; exit 2; }
	$(BIN)/python bench/run.py $(BENCH_ARGS)

run: venv
	$(BIN)/alertpipe run

emulate: venv
	$(BIN)/alertpipe emulate --write-credentials data/emulator-service-account.json

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
