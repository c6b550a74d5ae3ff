# Two commands from a fresh clone:  make book  |  make test
# PROFILE=full (published numbers) or PROFILE=smoke (small data, few repeats).
# One chapter and what it reads:  make chapter SLUG=quantization [PROFILE=smoke] [FORCE=1]
PROFILE ?= full
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: setup test test-resnet34 lint book notebooks chapter html browser-test clean strip

setup:
	bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q --durations=20 -m "not browser and not resnet34"

# Every chapter's smoke profile with a random-weights WeSpeaker ResNet34 (the DIAROPT_RESNET34 path;
# plumbing only, results go to a temporary folder, never to _build/results). Too long for `make test`.
test-resnet34: setup
	$(PY) -m pytest -q -m resnet34 tests/test_resnet34_path.py

lint: setup
	$(PY) -m ruff check src tests
	$(PY) -m nbqa ruff notebooks/

notebooks: setup
	$(PY) -m diaropt.book execute --profile $(PROFILE) $(if $(FORCE),--force)

chapter: setup
	@test -n "$(SLUG)" || { echo "usage: make chapter SLUG=<slug, e.g. quantization> [PROFILE=smoke] [FORCE=1]" >&2; exit 2; }
	$(PY) -m diaropt.book execute --profile $(PROFILE) --only $(SLUG) $(if $(FORCE),--force)

html: setup
	$(PY) -m diaropt.book build

browser-test: setup
	$(PY) -m pytest -q -m browser

book: notebooks html browser-test

strip:
	$(PY) -m nbstripout --keep-id notebooks/*.ipynb

clean:
	rm -rf _build
