# Two commands for a new user: `make demo` and `make test`. Both create .venv when missing and
# install the project into it; a second run reuses it (the stamp tracks pyproject.toml).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint format install clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The embedded demo sweep (digits, 3 λ₂ × 2 depths, search + retrain trials, Pareto front) into
# runs/demo; a second `make demo` finds the finished run and only redraws its front.
demo: $(STAMP)
	$(VENV)/bin/proxyless sweep

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
