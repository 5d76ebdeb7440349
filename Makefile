# django-fence developer commands. `make help` lists them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	@touch $(STAMP)

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

demo: $(STAMP) ## run the demo project at http://127.0.0.1:8000 on embedded defaults
	$(PY) testproject/manage.py migrate --noinput
	$(PY) testproject/manage.py setup_demo
	$(PY) testproject/manage.py runserver 127.0.0.1:8000

test: $(STAMP) lint typecheck ## lint, type-check and run the whole suite against real servers
	$(PY) -m pytest

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check django_fence tests testproject benchmarks

typecheck: $(STAMP) ## mypy (strict) on the package
	$(VENV)/bin/mypy

bench: $(STAMP) ## side-by-side benchmarks against the peers
	$(PY) benchmarks/stampede.py
	$(PY) benchmarks/votes.py

clean: ## remove the virtualenv and build leftovers
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache testproject/db.sqlite3
