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

demo: $(STAMP)
	$(VENV)/bin/proxyless search --config configs/search_digits.yaml --out runs/demo/search
	$(VENV)/bin/proxyless retrain runs/demo/search/architecture.json --dataset digits --epochs 8 \
		--lut runs/demo/search/latency.parquet --out runs/demo/retrain

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
