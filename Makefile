# The README's two commands: `make run` (set up + main job) and `make test` (set up + tests).
VENV ?= .venv

.PHONY: setup run test bench clean
setup:
	@./scripts/setup.sh

run: setup
	$(VENV)/bin/clauseloop run

test: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
