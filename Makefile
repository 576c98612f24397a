# Two entry points for a fresh clone: `make run` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False
export DO_NOT_TRACK := 1

.PHONY: install run test test-fast lint format demo clean system-deps

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
system-deps:
	@{ command -v chromium && test -d /usr/share/fonts/opentype/noto; } >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-noto-cjk >/dev/null; }
	@{ command -v tesseract && command -v soffice && test -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc; } >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq --no-install-recommends tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui fonts-wqy-microhei >/dev/null; }

run: install
	$(BIN)/rag demo --if-missing
	$(BIN)/rag serve

test: install system-deps
	$(BIN)/pytest -q

test-fast: install
	$(BIN)/pytest -q -m "not slow and not browser"

lint: install
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .rag .pytest_cache
