# Everyday commands. `make help` lists them; each is the plain command, so it runs without make too.
PYTHON ?= python3
PYTEST := $(PYTHON) -m pytest -q -p no:cacheprovider

.PHONY: help install demo test fast lint bench

help:
	@echo "make install  editable install with the dev tools"
	@echo "make demo     the console on SQLite + the bundled Stripe emulator (no Stripe account)"
	@echo "make test     the whole suite (browser tests included)"
	@echo "make fast     everything but the browser tests: pytest -m \"not e2e\""
	@echo "make lint     ruff check . and mypy (strict; the files are listed in pyproject.toml)"
	@echo "make bench    the benchmark scripts that print figures (webhooks, reconcile, search)"

install:
	$(PYTHON) -m pip install -q -e '.[dev]'

demo:
	billing-ops demo

test:
	$(PYTEST)

fast:
	$(PYTEST) -m "not e2e"

lint:
	ruff check .
	mypy

bench:
	$(PYTHON) benchmarks/webhooks.py
	$(PYTHON) benchmarks/reconcile.py
	$(PYTHON) benchmarks/search.py
