# relctl: the only two commands a newcomer needs are `make demo` and `make test`.
# Every target creates the virtualenv itself when it is missing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench bench-scale schemas clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# make demo BOARD=1 also serves the release board on 127.0.0.1 (its address is printed).
demo: $(STAMP)
	BOARD=$(BOARD) $(BIN)/python -m controller.demo

# Hypothesis runs its quick "default" profile, or the thorough "ci" one when CI is set or
# HYPOTHESIS_PROFILE=ci (tests/conftest.py). CI runs every test, the slow ones included.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

lint: $(STAMP)
	$(BIN)/ruff check controller tests bench
	$(BIN)/ruff format --check controller tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/validate.py
	$(BIN)/python bench/check.py
	$(BIN)/python bench/reconcile.py

# 1,000, 10,000 and 100,000 releases in one repository (3-4 minutes on two cores);
# make bench-scale SIZES=1000,10000 for a quick look.
SIZES ?= 1000,10000,100000
bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py --sizes $(SIZES)

# schemas/ is the copy people edit and editors read; relctl loads the copy inside the package
# (controller/schemas/) so that an installed wheel has it. This copies the one to the other.
schemas:
	rm -f controller/schemas/*.schema.json
	cp schemas/*.schema.json controller/schemas/

clean:
	rm -rf $(VENV) .relctl .pytest_cache .mypy_cache .ruff_cache
