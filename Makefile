# Two entry points, both doing their own set-up on a fresh machine:
#   make app    start the dashboard on the shipped model (http://localhost:8501)
#   make test   run the whole test suite (what .ci/run runs)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

.PHONY: app test test-fast

$(STAMP): requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

# Browser tests drive Debian's Chromium through Playwright (never `playwright install`, which downloads one).
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

app: $(STAMP)
	$(PY) -m streamlit run app.py

test: $(STAMP) $(CHROMIUM)
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -ra

test-fast: $(STAMP)
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest -ra -m "not slow"
