PYTHON ?= python3

.PHONY: deps test demo bench

deps:
	bash scripts/install-deps.sh

test: deps
	$(PYTHON) -m pytest -q

demo: deps
	bash scripts/demo.sh

bench: deps
	$(PYTHON) bench/run.py
