# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.detoxkit-installed

.PHONY: install demo test lint bench scorer clean

install: $(STAMP)

# Reinstall when the pinned requirements or the package metadata change.
$(STAMP): requirements/runtime.txt requirements/assets.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements/runtime.txt
	$(PY) -m pip install -q --no-deps -r requirements/assets.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

demo: install
	$(VENV)/bin/detoxkit demo

test: install lint
	DETOXKIT_PROGRESS=0 $(PY) -m pytest -q

# Style: `ruff format` keeps the layout, `ruff check` the rules in pyproject.toml.
lint: install
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks

bench: install
	$(PY) benchmarks/scorers.py

# Retrain the committed toxicity scorer head and its model card (minutes on 2 cores).
scorer: install
	$(VENV)/bin/detoxkit scorer train --config configs/scorer_train.yaml

clean:
	rm -rf $(VENV) .pytest_cache
