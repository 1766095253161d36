# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-slow test-package bench package fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[desktop,test]'
	touch $(STAMP)

run: $(STAMP)  ## server (SQLite in the user data dir) + desktop app + simulator
	$(BIN)/storypulse demo

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest

# The fuzz tests at length: 200,000 frames per server port and 5,000 examples per decoder
# property (minutes, not seconds). A failure prints STORYPULSE_FUZZ_SEED to replay it.
FUZZ_FRAMES   ?= 200000
FUZZ_EXAMPLES ?= 5000
fuzz: $(STAMP)
	STORYPULSE_FUZZ_FRAMES=$(FUZZ_FRAMES) STORYPULSE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -s --timeout 3600 \
	    tests/test_protocol_fuzz.py tests/test_server_fuzz.py

bench: $(STAMP)
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/recovery.py
	$(BIN)/python bench/backlog.py
	$(BIN)/python bench/flow.py
	$(BIN)/python bench/worker_hosts.py  # as root: hosts in network namespaces; else on loopback
	-$(BIN)/python bench/autoscale_replay.py  # exits 1 while the seed rule spends fewer worker-s

package: $(STAMP)  ## PyInstaller bundles + (on Linux) the .deb, into dist/
	$(BIN)/python -c 'import PyInstaller, psycopg2' 2>/dev/null || $(BIN)/pip install --quiet -e '.[desktop,package,postgres]'
	$(BIN)/python packaging/build.py

test-slow: $(STAMP)  ## the installer test, building its own bundles (fast .deb compression)
	$(BIN)/python -c 'import PyInstaller' 2>/dev/null || $(BIN)/pip install --quiet -e '.[desktop,test,package]'
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -m slow

test-package: package  ## the slow installer test, on the bundles just built
	QT_QPA_PLATFORM=offscreen STORYPULSE_DIST=dist $(BIN)/python -m pytest -m slow tests/test_package.py

clean:
	rm -rf $(VENV) build dist *.egg-info
