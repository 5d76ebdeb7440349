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
	@# good-redis (the streams' peer, side-by-side tests and benchmark) declares Python >= 3.12 and its
	@# good-common >= 3.13, yet both import on 3.11; good-common also imports sniffio and pydantic
	@# without declaring them. An extra cannot ignore Requires-Python, hence this line.
	$(PY) -m pip install -q --ignore-requires-python good-redis==0.2.8 good-common==0.3.5 sniffio pydantic
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
	$(PY) benchmarks/streams.py
	$(PY) benchmarks/invalidate.py
	$(PY) benchmarks/votes.py
	$(PY) benchmarks/admin.py

clean: ## remove the virtualenv and build leftovers
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache testproject/db.sqlite3
