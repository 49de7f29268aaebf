# Two entry points, both doing their own set-up on a fresh machine:
#   make app    start the dashboard on the shipped model (http://127.0.0.1:8501; single-user local mode unless
#               sign-in is configured, see the README's "Sign-in and roles"; ARGS="--server.port 8502" passes
#               Streamlit options)
#   make test   ruff, then the whole test suite (what .ci/run runs)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: app lint test test-fast

$(STAMP): requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

# Real components the tests start themselves, on 127.0.0.1, all from Debian: Chromium for the browser tests
# (driven by Playwright; never `playwright install`, which downloads one), Orthanc with its DICOMweb plugin as
# the PACS, dicom3tools' dciodvfy to validate DICOM results, PostgreSQL for the audit log, openssl for the TLS
# test's throw-away certificate.
SYSTEM_PACKAGES := chromium orthanc orthanc-dicomweb dicom3tools postgresql openssl
SYSTEM_STAMP := $(VENV)/.system-packages

$(SYSTEM_STAMP): | $(STAMP)
	dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES); }
	touch $@

# MALLOC_ARENA_MAX=2: glibc gives each thread (one per browser session) its own malloc arena and rarely hands
# memory back; with two arenas, six sessions reading 46 MB DICOMs peaked at 2.0 GB instead of 2.4 GB
# (scripts/load_test.py).
app: $(STAMP)
	MALLOC_ARENA_MAX=2 $(PY) -m covidviz.ui.serve $(ARGS)

# ruff first: a lint error (pyproject.toml's [tool.ruff], import order included) fails the run in seconds
lint: $(STAMP)
	$(PY) -m ruff check .

test: lint $(SYSTEM_STAMP)
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -ra

test-fast: lint
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -ra -m "not slow"
