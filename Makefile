# StepAlign: `make demo` shows the method learning on the CPU, `make test` installs everything and tests it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stepalign-installed
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: install lock lint typecheck test test-deploy demo demo-critic serve bench bench-service clean

$(STAMP): requirements/cpu.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	# One install of the fully pinned stack: torch 2.13.0+cpu is in the same file, so no CUDA torch is pulled.
	$(PY) -m pip install --quiet --no-deps -r requirements/cpu.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# Re-resolve requirements/cpu.txt from the top-level pins in requirements/cpu.in (needs the package index).
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet -r requirements/cpu.in
	.lockenv/bin/pip uninstall --quiet -y torchvision torchaudio torchcodec
	{ head -n 2 requirements/cpu.txt; .lockenv/bin/pip freeze --all --exclude-editable | grep -v "^pip=="; } > requirements/cpu.txt.new
	mv requirements/cpu.txt.new requirements/cpu.txt && rm -rf .lockenv

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy shared critic_service

test: lint typecheck
	$(PY) -m pytest --cov=shared --cov-report=term-missing:skip-covered --cov-fail-under=90 $(PYTEST_ARGS)

# The deployment, built and run with a real Docker engine (as root; its own dockerd, stopped on exit): the base,
# critic and trainer images, then the CPU compose profile on 127.0.0.1 (docker/test-deploy.sh; docs/deploy.md).
test-deploy: install
	bash docker/test-deploy.sh

# The method working on this CPU (trainer/toy/demo.py): a real critic server (checker engine), a toy solver
# pretrained offline, GRPO / RefSol / StepAlignFB / StepAlignFB + cut through the real trainer, eval, analyze, a
# report in runs/demo-<time>/. More seeds: make demo DEMO_ARGS="--seeds 3".
demo: install
	$(PY) -m trainer.toy.demo $(DEMO_ARGS)

# Just the critic: one critique of a wrong solution, printed.
demo-critic: install
	$(PY) -m critic_service.demo

serve: install
	$(VENV)/bin/stepalign-critic serve $(SERVE_ARGS)

bench: install
	$(PY) bench/answer_pairs.py

bench-service: install
	$(PY) bench/service_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
