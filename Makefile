# One virtualenv for everything; `make run` and `make test` both install first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP_FLAGS := -q --disable-pip-version-check -c constraints.txt

.PHONY: install postgres run test bench down clean constraints

install: postgres $(VENV)/.installed

# The PostgreSQL server binaries (Debian's postgresql package); the tests and the local stack start their own cluster.
postgres:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || \
	  (export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get install -y -q postgresql)

$(VENV)/.installed: pyproject.toml constraints.txt setup.py compliance/jcs.py compliance/events.py compliance/chain.py compliance/timefmt.py \
		compliance/exports.py verifier/pyproject.toml verifier/setup.py $(wildcard verifier/ledger_verify/*.py)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# Every dependency at the version in constraints.txt: pip resolves nothing (minutes saved on a fresh machine),
	@# and a release upstream cannot change what is installed.
	@# The auditor's package first (the ledger depends on it), compiled here with mypyc like the hot path;
	@# an auditor's own `pip install ./verifier` builds plain Python and needs no compiler.
	$(BIN)/pip install $(PIP_FLAGS) "setuptools>=68" "mypy==2.4.1" "cryptography>=42"
	LEDGER_VERIFY_COMPILE=1 $(BIN)/pip install $(PIP_FLAGS) --no-build-isolation -e ./verifier
	$(BIN)/pip install $(PIP_FLAGS) -e ".[test]" 2>&1 | grep -v -e '^WARNING: Location' || true
	$(BIN)/python -c "import prefect, psycopg, moto, polars, compliance.jcs"
	@# setup.py falls back to plain Python when mypyc cannot compile; say so here rather than run 3x slower.
	@$(BIN)/python -c "import os, compliance.chain as c; os.environ.get('COMPLIANCE_NO_COMPILE') == '1' or \
	  (c.__file__.endswith('.so') and __import__('ledger_verify.export').export.__file__.endswith('.so')) or exit('the hot path was not compiled: $(BIN)/pip install -v -e . shows why; \
	  COMPLIANCE_NO_COMPILE=1 installs plain Python on purpose')"
	touch $@

# The local stack, the deployments served, the Prefect UI up, demo traffic flowing. Ctrl-C stops it.
# `make run WORKERS=2`: deployed to a local process work pool instead, executed by two `prefect worker`s.
run: install
	$(BIN)/python -m deployments.serve $(if $(WORKERS),--workers $(WORKERS))

# The whole test suite against a real PostgreSQL and a real S3 server (both started by the tests).
test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/canonical.py
	$(BIN)/python bench/drain.py
	$(BIN)/python bench/anchor.py
	$(BIN)/python bench/export.py
	$(BIN)/python bench/verify_package.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/load.py

# After changing a dependency in pyproject.toml: install it, check, then pin what is installed.
constraints:
	$(BIN)/pip freeze --exclude-editable --disable-pip-version-check | grep -v -e '^compliance-ledger==' -e '^ledger-verify==' > constraints.txt

down:
	$(BIN)/compliance dev down

clean:
	-$(BIN)/compliance dev down --purge
	rm -rf $(VENV)
