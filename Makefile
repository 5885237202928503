# Two commands on a fresh machine:
#   make install   Python packages into .venv + local Grid Engine, SLURM and sshd + drone test image
#   make test      brings the local services and the image up (idempotent), runs make lint and the whole suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python

.PHONY: install venv services image test unit lint bench demo

install: venv services image

# Debian's own python3 needs the python3-venv package for a venv; other builds have it
# (a fresh image may have no package lists yet: update, then try again)
venv:
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || \
		{ { apt-get install -y -q python3-venv </dev/null || \
		    { apt-get update -q </dev/null && apt-get install -y -q python3-venv </dev/null; }; } && \
		  $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'

services:
	bash services/up.sh

# The drone test image and its Apptainer stand-in (containers/test-image/README.md); cached,
# rebuilt only in the layers whose inputs changed, this package reinstalled each time
image:
	bash containers/test-image/build.sh

test: services image lint
	$(PY) -m pytest -ra

unit:
	$(PY) -m pytest -ra tests/unit

# the same checks CI runs first (docs/maintainers.md, "Lint"): ruff's rules, ruff's
# formatting and mypy on the package (its settings are in pyproject.toml)
lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

demo:
	$(VENV)/bin/tardis-sge-dask demo
