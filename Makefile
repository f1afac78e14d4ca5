# The two front doors: `make demo` and `make test`. Both create or reuse .venv/ at the repo root
# and install the project from its own files (torch from the local wheel cache where pip is capped).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: venv browser demo test test-fast lint

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[cpu,dev]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

# Debian's Chromium + ChromeDriver for the web page's real-browser tests (browser downloads do not
# work offline). Installed when missing and apt-get is usable (root); otherwise those tests skip.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) || \
	    echo "chromium/chromedriver not installed: the browser tests will be skipped (CI: they fail)"; }

demo: $(STAMP)
	$(BIN)/ssl-cyto demo --out demo_out

test: $(STAMP) browser
	$(BIN)/python -m pytest -q tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

lint: $(STAMP)
	$(BIN)/ruff check ssl_cyto tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
