# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
# Prefect's client-side telemetry opt-out (server analytics are off in prefect.toml).
export DO_NOT_TRACK := 1
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint validate clean lock

demo: $(VENV)/installed
	$(BIN)/siyu demo

# Three workers on two cores: much of the suite waits on subprocesses and servers (measured:
# docs/scale.md is for speed; the README's Tests section has the suite's time).
test: $(VENV)/installed
	$(BIN)/python -m pytest -n 3 --dist loadgroup

# lint-imports runs from the repository's root: flows/ and tasks/ are imported from there.
lint: $(VENV)/installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

validate: $(VENV)/installed
	$(BIN)/siyu validate

# Exactly the versions CI tested (requirements.lock, hash-pinned), then siyu itself on top.
# Refresh the lock after changing pyproject.toml's dependencies: `make lock`.
$(VENV)/installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

lock: $(VENV)/installed
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra test --extra postgres --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --generate-hashes \
	  --upgrade -o requirements.lock

clean:
	rm -rf $(VENV) var
