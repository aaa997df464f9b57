# treadle developer tasks.

PYTHON ?= python
export PYTHONPATH := $(CURDIR)/src$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: bench bench-quick

## bench: full benchmark suite (chain, concurrent, fanout, cluster, server, scaling); needs Postgres, see bench/README.md
bench:
	$(PYTHON) -m bench

## bench-quick: the same benchmarks at smaller sizes / shorter windows
bench-quick:
	$(PYTHON) -m bench --quick

.PHONY: test check

## test: the whole suite (what CI runs)
test:
	$(PYTHON) -m pytest -q

## check: lint, strict type check of src and tests (pyproject's [tool.mypy]) and the import layers (pyproject's [tool.importlinter])
check:
	ruff check src tests bench
	mypy
	lint-imports
