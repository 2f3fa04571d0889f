# Two commands on a fresh machine: `make grid` (the main job) and `make test`.
# Every target but help, clean and demo-figures creates .venv on first use (python3 -m venv + pip install -e '.[dev]') and reuses it.

SHELL   := /bin/bash
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# what `python -m venv` is also given: --system-site-packages reuses the PyTorch of a box that has one
# (a container's, a cluster module's, or a venv's: a venv made from a venv's python sees its packages)
VENV_ARGS ?=
SYSTEM_SITE := $(findstring --system-site-packages,$(VENV_ARGS))
# the extras installed with the suite: dev (tests, linters) by default; EXTRAS= the runtime only (enough
# for grid, perf and gpu-check). Each set, with or without the system's packages, has its own stamp:
# `make test` never finds a smaller set, and a venv made without the system's packages is made again
EXTRAS  ?= dev
comma   := ,
EXTRAS_TAG := $(subst $(comma),-,$(or $(EXTRAS),none))
STAMP   := $(VENV)/.installed$(if $(filter-out dev,$(EXTRAS_TAG)),-$(EXTRAS_TAG))$(if $(SYSTEM_SITE),-system)
ifneq ($(words $(VENV)),1)
$(error VENV="$(VENV)": give a path without spaces (make cannot name a target with one))
endif
# a venv whose stamp is there but that does not run this checkout's bench (the checkout was moved, or
# copied with its .venv, or another checkout shares VENV), whose Python no longer runs (its interpreter
# was uninstalled), or of another Python version than a PYTHON given on the command line, is installed
# again: the stamp alone trusted it, and it ran the other checkout's code or failed to start
PYTHON_WANTED := $(if $(filter command line,$(origin PYTHON)),$(shell { $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true; } | grep -x '[0-9]*\.[0-9]*' || echo none))
ifneq ($(wildcard $(STAMP)),)
VENV_STATE := $(shell $(BIN)/python -I -c 'import pathlib, sys, bench; print(pathlib.Path(bench.__file__).resolve().parents[1] == pathlib.Path(sys.argv[1]).resolve(), "%d.%d" % sys.version_info[:2])' "$(CURDIR)" 2>/dev/null)
VENV_STALE := $(if $(filter True,$(firstword $(VENV_STATE))),$(if $(PYTHON_WANTED),$(filter-out $(PYTHON_WANTED),$(word 2,$(VENV_STATE)))),stale)
ifneq ($(VENV_STALE),)
$(STAMP): FORCE
endif
endif
# two makes that install the venv at once (`make grid` and `make test` in two terminals on a fresh
# clone) take turns on $(VENV).lock; the second finds it done. The lock is flock(1) where it is there
# (Linux), else PYTHON's fcntl.flock holding the lock's file open through an exec of the make (macOS
# has no flock(1)); a Ctrl-C while waiting ends it without a traceback. A PYTHON older than 3.4 (no
# os.set_inheritable; macOS's old `python` is 2.7) takes no lock: the recipe then says what it needs.
# Not under -n: a dry run runs the recipe line that holds $(MAKE), and would make the lock's folder and file
DRY_RUN := $(findstring n,$(firstword -$(MAKEFLAGS)))
PY_FLOCK = $(PYTHON) -c 'import fcntl, os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); \
  fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644); fcntl.flock(fd, fcntl.LOCK_EX); \
  os.set_inheritable(fd, True); os.execvp(sys.argv[2], sys.argv[2:])'
VENV_LOCK := $(if $(DRY_RUN),,$(or $(shell command -v flock 2>/dev/null),$(if \
  $(shell $(PYTHON) -c 'import fcntl, sys; sys.exit(sys.version_info < (3, 4))' 2>/dev/null && echo yes),$(PY_FLOCK))))
SPEC    ?= specs/demo.toml
DATA    ?=
RESULTS ?= results
PYTEST_ARGS ?=
# cores this make may use (nproc without the OpenMP variables, which it would otherwise report)
CORES   := $(shell env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
# test processes: one per core, at most 4 (each holds torch; the end-to-end tests start grids of their own)
TEST_WORKERS ?= $(shell echo $$(( $(CORES) < 4 ? $(CORES) : 4 )))
# torch threads per test process (and per `bench` process a test starts): the cores shared out, not
# torch's default of every core in every process, whose spinning OpenMP threads took a third of the
# suite's CPU time on 2 cores
TEST_THREADS ?= $(shell w=$(TEST_WORKERS); t=$$(( $(CORES) / (w > 1 ? w : 1) )); echo $$(( t > 1 ? t : 1 )))

.DEFAULT_GOAL := help
.PHONY: help grid demo-figures report transfer prepare plan perf wheels gpu-check test stress lint clean FORCE

help: ## list the targets
	@echo "Usage: make TARGET [SPEC=specs/demo.toml] [DATA=/path/to/dataset] [RESULTS=results]"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

ifeq ($(VENV_LOCKED),)
$(STAMP): pyproject.toml
	@$(if $(VENV_LOCK),mkdir -p $(dir $(VENV)) && $(VENV_LOCK) $(VENV).lock) $(MAKE) --no-print-directory -s VENV_LOCKED=1 $(STAMP)
else
$(STAMP): pyproject.toml
	@# a venv left without pip (python3-venv missing when it was made), made by a Python older than 3.10,
	@# made without the system's packages that VENV_ARGS asks for, or by another version than a PYTHON
	@# given on the command line, is made again, from PYTHON, which must itself be 3.10 or newer
	@{ $(BIN)/python -c 'import sys, pip; sys.exit(sys.version_info < (3, 10))' 2>/dev/null \
	   $(if $(SYSTEM_SITE),&& grep -qs '^include-system-site-packages *= *true' $(VENV)/pyvenv.cfg) \
	   $(if $(PYTHON_WANTED),&& test "$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = $(PYTHON_WANTED)); } || { \
	  command -v $(PYTHON) >/dev/null 2>&1 || { \
	    echo "bench needs Python 3.10 or newer; $(PYTHON): not found: run make PYTHON=python3.12 (or another" \
	         "3.10+ interpreter)" >&2; exit 1; }; \
	  $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || { \
	    echo "bench needs Python 3.10 or newer; $(PYTHON) is $$($(PYTHON) --version 2>&1 | head -n 1):" \
	         "run make PYTHON=python3.12 (or another 3.10+ interpreter)" >&2; exit 1; }; \
	  $(PYTHON) -m venv --clear $(VENV_ARGS) $(VENV) $(if $(SYSTEM_SITE),&& \
	  $(PYTHON) -c 'import site; import sys; sys.prefix != sys.base_prefix and print("\n".join("import site; site.addsitedir(%r)" % p for p in site.getsitepackages()))' \
	    > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/bench-parent-env.pth"); }
	@# a venv made before the distribution was renamed holds it as `bench`: one copy only
	@$(BIN)/python -m pip uninstall -y -q bench >/dev/null 2>&1 || true
	@echo "installing the suite into $(VENV): pip install -e '.$(if $(EXTRAS),[$(EXTRAS)])'"
	@$(BIN)/python -m pip install --disable-pip-version-check -q -e '.$(if $(EXTRAS),[$(EXTRAS)])'
	@touch $(STAMP)
endif

FORCE:

# `make clean plan` (or any goals with clean) under -j: the venv is not removed while it is made
ifneq ($(filter clean,$(MAKECMDGOALS)),)
.NOTPARALLEL:
endif

GRID_ARGS ?=

# the demo's VGG at its base width (0.0625) is the model its figures show; copied without the width
DEMO_FIGURES := tradeoff_gmac.png fig1_vgg-w0.0625.png per_tag_vgg-w0.0625.png per_tag_global_vgg-w0.0625.png
DEMO_REPORT  := $(RESULTS)/demo/report

grid: $(STAMP) ## train every run of SPEC not done yet (default: the synthetic demo), then the report
	$(BIN)/bench grid "$(SPEC)" $(if $(DATA),--data "$(DATA)") --results "$(RESULTS)" $(GRID_ARGS)

demo-figures: ## copy the demo's figures shown in README and docs/ into docs/figures/ (after the demo's grid)
	@test -d "$(DEMO_REPORT)" || { echo "no $(DEMO_REPORT)/: run \`make grid\` (the demo) first" >&2; exit 1; }
	@for f in $(DEMO_FIGURES); do test -f "$(DEMO_REPORT)/$$f" || { \
		echo "no $(DEMO_REPORT)/$$f: run \`make report\` (the demo) first" >&2; exit 1; }; done
	@mkdir -p docs/figures && for f in $(DEMO_FIGURES); do cp "$(DEMO_REPORT)/$$f" docs/figures/demo_$${f/-w0.0625/}; done
	@echo "updated docs/figures/ from $(DEMO_REPORT)/: $(subst -w0.0625,,$(addprefix demo_,$(DEMO_FIGURES)))"
	@if test -f "$(RESULTS)/demo/transfer/hiss/transfer.png"; then \
		cp "$(RESULTS)/demo/transfer/hiss/transfer.png" docs/figures/demo_transfer_hiss.png; \
		echo "updated docs/figures/demo_transfer_hiss.png from $(RESULTS)/demo/transfer/hiss/ (make transfer)"; fi

report: $(STAMP) ## tables and figures of SPEC's results (RESULTS/<spec name>/report/)
	$(BIN)/bench report "$(SPEC)" --results "$(RESULTS)"

# downstream tasks of the demo: 300 new synthetic clips (seed 1: audio the demo's models never heard)
TRANSFER_DATA  ?= data/synthetic-transfer
TRANSFER_TASKS ?= hiss mode

transfer: $(STAMP) ## embeddings of SPEC's runs scored on downstream tasks (default: the demo's, after `make grid`)
	$(BIN)/bench synth --out "$(TRANSFER_DATA)" --clips 300 --seed 1 --seconds 4 $(addprefix --task ,$(TRANSFER_TASKS))
	@for task in $(TRANSFER_TASKS); do \
		$(BIN)/bench transfer "$(SPEC)" --task "$(TRANSFER_DATA)/$$task.csv" --untrained --results "$(RESULTS)" \
		|| exit $$?; done

prepare: $(STAMP) ## decode and resample SPEC's dataset into the waveform cache
	$(BIN)/bench prepare "$(SPEC)" $(if $(DATA),--data "$(DATA)")

plan: $(STAMP) ## print SPEC's configurations with input shapes and storage
	$(BIN)/bench plan "$(SPEC)" --results "$(RESULTS)"

PERF_SPEC ?= specs/paper-mtat-vgg.toml
PERF_ARGS ?=

perf: $(STAMP) ## measure training speed, conv peak, front end, data path (RESULTS/perf/<spec>.json)
	$(BIN)/bench perf "$(PERF_SPEC)" --out "$(RESULTS)/perf/$$($(BIN)/python -c 'import pathlib, sys; print(pathlib.Path(sys.argv[1]).stem)' "$(PERF_SPEC)").json" $(PERF_ARGS)

# `make wheels` for a box with no internet: the box's Python, and what it has (names, or its `pip freeze`)
WHEELS_PYTHON ?= $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
WHEELS_HAVE   ?= torch torchaudio
WHEELS_EXTRAS ?=

wheels: $(STAMP) ## on a connected machine: wheels/ to install on a box with no internet (docs/running.md)
	$(BIN)/python -m bench.tools.wheelhouse --out wheels --python-version $(WHEELS_PYTHON) \
	  --extras '$(WHEELS_EXTRAS)' --have '$(WHEELS_HAVE)'

GPUCHECK_ARGS ?=

gpu-check: $(STAMP) ## GPU acceptance: tiny grids on CUDA, throughput, memory (RESULTS/gpu-check.json)
	$(BIN)/python -m bench.tools.gpucheck --out "$(RESULTS)/gpu-check.json" $(GPUCHECK_ARGS)

# the linters through the venv's Python: a venv made with --system-site-packages on a Python that has
# them already has their modules but not their console scripts
LINT_IMPORTS := $(BIN)/python -c 'import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())' --no-cache

test: $(STAMP) ## check the dependency map, then run the test suite (CPU only)
	$(LINT_IMPORTS)
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -q $(if $(filter-out 0 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder) $(PYTEST_ARGS)

STRESS_ARGS ?=

stress: $(STAMP) ## kill grids at random, race workers, feed bad audio and random specs; print the figures
	$(BIN)/python -m tests.harness.stress $(STRESS_ARGS)

lint: $(STAMP) ## ruff over the code and tests, and the dependency map (import-linter contracts in pyproject.toml)
	$(BIN)/python -m ruff check bench architectures tests benchmarks
	$(LINT_IMPORTS)

clean: ## remove the virtual environment and Python's caches (results, data and the waveform cache/ are kept)
	rm -rf $(VENV) $(VENV).lock .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
