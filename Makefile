# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Tests keep their embedded Redis and files apart from a running `make run`.
TEST_VAR_DIR ?= $(CURDIR)/var/test

.PHONY: run test lint bench setup migrate clean

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt -c constraints.txt
	touch $@

setup: $(VENV)/.installed

migrate: setup
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) manage.py runmonitor

lint: setup
	$(VENV)/bin/ruff check .

test: setup lint
	MONITORING_VAR_DIR=$(TEST_VAR_DIR) $(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) var .pytest_cache
