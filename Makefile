# podium — the two commands of the README: `make demo` and `make test`.
# Both run `make setup` first; setup is idempotent (a stamp file records a finished install,
# so a second call reuses .venv and does no network work).

# The interpreter .venv is built with (only when .venv does not exist yet): PYTHON if given
# (`make demo PYTHON=/path/to/python`), else python3.11, python3.12, python3.13 —
# scripts/find_python.sh picks it, says which and why, or names what it found and how to get one.
PYTHON ?=
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.podium-installed

DEMO_DATA := data/nuclei
DEMO_RUN  := logs/nuclei_demo
DEMO_PRED := $(DEMO_RUN)/predictions

.PHONY: setup demo test test-deps lint bench clean-demo docs

setup: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml podium/compat/startup.py
	@if test -x $(PIP); then echo "make setup: reusing $(VENV) ($$($(PY) -V 2>&1))"; \
	else py="$$(sh scripts/find_python.sh '$(PYTHON)')" && "$$py" -m venv $(VENV); fi
	# Catalyst 21.6-22.4 publish requirement strings such as `tensorboardX (<2.3.0>=2.1.0)`;
	# pip >= 24.1 rejects them as invalid metadata, so the venv's pip is held at exactly 24.0.
	# A Python >= 3.12 venv has no setuptools, which `-e .` (--no-build-isolation) builds with.
	$(PIP) install --quiet "pip==24.0" "setuptools>=64"
	$(PIP) install --quiet -r requirements.txt
	# catalyst (stale pins) and stardist (sample data only) without their dependencies.
	$(PIP) install --quiet --no-deps -r requirements-nodeps.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m podium.compat.startup install
	$(PY) -c "import cv2, catalyst, podium; print('podium set-up OK: cv2', cv2.__version__, '| catalyst', catalyst.__version__)"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/podium samples nuclei --out $(DEMO_DATA)
	rm -rf $(DEMO_RUN)  # a fresh run each time (Catalyst appends to the CSV logs of an old one)
	# fast.yml: bf16 + channels_last where the hardware computes bf16 natively, else fp32
	$(VENV)/bin/catalyst-dl run --config configs/nuclei/unet_resnet18.yml configs/nuclei/fast.yml \
		--args/logdir=$(DEMO_RUN):str
	$(VENV)/bin/podium predict --run $(DEMO_RUN) --data $(DEMO_DATA) --split valid --out $(DEMO_PRED) \
		--precision auto --memory-format auto
	$(VENV)/bin/podium report $(DEMO_RUN) --out $(DEMO_RUN)/report.html
	@echo "run directory: $(DEMO_RUN)   predicted masks: $(DEMO_PRED)/masks   report: $(DEMO_RUN)/report.html"

# scripts/test-deps.sh first: a program the suite needs (chromium) is installed or named at once;
# then the lint (seconds), so a style slip stops the run before the 13-minute suite
test: test-deps setup lint
	$(VENV)/bin/python -m pytest -q tests

# ruff: lint rules and the one line length (100) are in pyproject.toml; `ruff format .` fixes
# what `format --check` reports
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test-deps:
	bash scripts/test-deps.sh

# Ratio benchmarks (podium vs a plain loop, loader, TTA) and peak memory: prints `overhead RATIOx`
# and the others' lines; report in benchmarks/results/summary.md. Run it on an idle machine.
bench: setup
	$(PY) benchmarks/run_all.py

# The documentation site (docs/ + mkdocs.yml) into site/: open site/index.html. --strict: a broken
# link or anchor, or a page missing from the nav, is an error (tests/test_docs.py builds it too).
# NO_MKDOCS_2_WARNING hides mkdocs-material's end-of-life notice (docs/install.md).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean-demo:
	rm -rf $(DEMO_DATA) $(DEMO_RUN)
