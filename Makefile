# One virtualenv for everything; `make run` and `make test` both install first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: install run test bench down clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e ".[test]"
	touch $@

# The local stack, the deployments served, the Prefect UI up, demo traffic flowing. Ctrl-C stops it.
run: install
	$(BIN)/python -m deployments.serve

# The whole test suite against a real PostgreSQL and a real S3 server (both started by the tests).
test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/canonical.py
	$(BIN)/python bench/drain.py

down:
	$(BIN)/compliance dev down

clean:
	-$(BIN)/compliance dev down --purge
	rm -rf $(VENV)
