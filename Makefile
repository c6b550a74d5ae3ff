# Two commands from a fresh clone:  make book  |  make test
# PROFILE=full (published numbers) or PROFILE=smoke (small data, few repeats).
PROFILE ?= full
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup test book notebooks html browser-test clean strip

setup:
	bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q -m "not browser"

notebooks: setup
	$(PY) -m diaropt.book execute --profile $(PROFILE)

html: setup
	$(PY) -m diaropt.book build

browser-test: setup
	$(PY) -m pytest -q -m browser

book: notebooks html browser-test

strip:
	$(PY) -m nbstripout --keep-id notebooks/*.ipynb

clean:
	rm -rf _build
