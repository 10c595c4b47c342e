# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test validate clean

demo: $(VENV)/installed
	$(BIN)/siyu demo

test: $(VENV)/installed
	$(BIN)/python -m pytest

validate: $(VENV)/installed
	$(BIN)/siyu validate

$(VENV)/installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,postgres]'
	touch $@

clean:
	rm -rf $(VENV) var
