# `make demo` and `make test` each build .venv on first use: torch (CPU wheel) first, then the package.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install system-deps bench clean

# Debian packages the tests use: eSpeak NG, Festival (with its kal voice) and Flite, and the French Asterisk prompts
# with their transcripts; chromium for the browser tests of serve's page (Playwright drives it). Each is installed
# only when missing (a command or a file it provides is absent).
DEBIAN_PACKAGES := espeak-ng festival festvox-kallpc16k flite asterisk-core-sounds-fr-wav asterisk-core-sounds-fr \
  asterisk-core-sounds-en-wav chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/plastispoof demo

# Installed only when missing; as root with apt-get, else the line to run is printed.
system-deps:
	@command -v espeak-ng >/dev/null && command -v text2wave >/dev/null && command -v flite >/dev/null && \
	  [ -d /usr/share/festival/voices/english/kal_diphone ] && [ -d /usr/share/asterisk/sounds/fr_CA_f_June ] && \
	  [ -f /usr/share/doc/asterisk-core-sounds-fr/core-sounds-fr.txt.gz ] && command -v chromium >/dev/null && \
	  [ -d /usr/share/asterisk/sounds/en_US_f_Allison ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $(DEBIAN_PACKAGES); \
	  else echo "the tests need Debian packages: sudo apt-get install $(DEBIAN_PACKAGES)"; exit 1; fi; }

# ruff first (pyflakes, pycodestyle at 120 columns, isort, bugbear: pyproject.toml); -rs lists every skip.
test: $(STAMP) system-deps
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider -rs

bench: $(STAMP)
	$(BIN)/python benchmarks/features.py
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/backward_time.py

clean:
	rm -rf $(VENV) runs .cache
