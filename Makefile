# The two commands of the README: `make demo` and `make test`. Each creates .venv and installs on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv notebooks benchmark clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m farnet_lite.demo

test: $(STAMP)
	FARNET_QUICK=1 $(PY) -m pytest -q tests --nbval-lax --nbval-current-env notebooks

notebooks: $(STAMP)
	$(PY) tools/notebooks.py run-all

benchmark: $(STAMP)
	$(PY) -m farnet_lite.cli benchmark

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
