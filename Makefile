# Two commands for a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Runs the example on the OpenAI API when OPENAI_API_KEY is set, otherwise on
# Joule's built-in simulator.
demo: $(STAMP)
	$(BIN)/python -m flows.report examples/regional-energy $(if $(OPENAI_API_KEY),,--simulate)

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench.rate_limits

lint: $(STAMP)
	$(BIN)/ruff format --check . && $(BIN)/ruff check .

clean:
	rm -rf $(VENV) examples/*/output .pytest_cache
