# Two entry points for a fresh clone: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False
export DO_NOT_TRACK := 1

.PHONY: install run test test-fast lint format demo clean system-deps format-deps run-deps

install: $(STAMP)

# CPU torch goes in first: a bare `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/pip install --disable-pip-version-check -q torch==2.13.0
	$(BIN)/pip install --disable-pip-version-check -q -e '.[dev]'
	$(BIN)/python -c "import torch, sys; sys.exit('CUDA torch in .venv: reinstall torch==2.13.0' if torch.version.cuda else 0)"
	$(BIN)/rag models prepare
	touch $(STAMP)

# Debian packages the browser tests need (headless Chromium), OCR (Tesseract zh+en), legacy Office conversion
# (LibreOffice) and a CJK font for the generated test corpus; each line is skipped when already present.
system-deps: format-deps
	@{ command -v chromium && test -d /usr/share/fonts/opentype/noto; } >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-noto-cjk >/dev/null; }
	@# PostgreSQL server binaries: the catalog tests start a throwaway server (tests/postgres_server.py).
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }

# What the formats need: Tesseract (OCR of scans and pictures, zh + en) and LibreOffice (doc, ppt, xls).
FORMAT_PACKAGES := tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui fonts-wqy-microhei
format-deps:
	@{ command -v tesseract && command -v soffice && test -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc; } >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq --no-install-recommends $(FORMAT_PACKAGES) >/dev/null; }

# `make run` installs them where it can (root, or password-less sudo, and apt); elsewhere it serves anyway
# and says once which formats stay off and the one command that turns them on.
run-deps:
	@{ command -v tesseract && command -v soffice; } >/dev/null 2>&1 && exit 0; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory format-deps || true; \
	elif command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo $(MAKE) --no-print-directory format-deps || true; fi; \
	off=""; command -v tesseract >/dev/null 2>&1 || off="OCR (scanned PDF pages, png/jpg/tiff/heic pictures)"; \
	command -v soffice >/dev/null 2>&1 || off="$${off:+$$off; }legacy Office (doc, ppt, xls)"; \
	[ -z "$$off" ] || echo "NOTE: serving without $$off: those files are reported as failed. Turn them on with: sudo make format-deps"

run: install run-deps
	$(BIN)/rag demo --if-missing
	$(BIN)/rag serve

# Tests run on two xdist workers (`make test TEST_WORKERS=1` for one process); each module (and the modules
# sharing one server) stays on one worker, so a module's server and KB are built once; tests/conftest.py
# hands out the longest modules first. Measured on 2 cores: 9-11 min of tests against ~20 in one process.
TEST_WORKERS ?= 2
PYTEST_PARALLEL := $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder)

test: install system-deps
	$(BIN)/pytest -q $(PYTEST_PARALLEL)

test-fast: install
	$(BIN)/pytest -q $(PYTEST_PARALLEL) -m "not slow and not browser"

lint: install
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .rag .pytest_cache
