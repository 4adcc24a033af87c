# The README's two commands: `make demo` and `make test`. Each creates the virtualenv and installs
# what the project needs when that is missing.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install test unit integration demo local lint format validate build deploy clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

unit: $(STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: $(STAMP)
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

demo: $(STAMP)
	$(VENV)/bin/smgt demo

local: $(STAMP)
	$(VENV)/bin/smgt local start

lint: $(STAMP)
	$(VENV)/bin/ruff check services smgt tests
	$(VENV)/bin/ruff format --check services smgt tests

format: $(STAMP)
	$(VENV)/bin/ruff check --fix services smgt tests
	$(VENV)/bin/ruff format services smgt tests

validate: $(STAMP)
	$(VENV)/bin/sam validate --lint --region us-east-1

build: $(STAMP)
	$(VENV)/bin/sam build

deploy: build
	$(VENV)/bin/sam deploy

clean:
	rm -rf .aws-sam .pytest_cache
