# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv on first use and reuse it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SAMPLE := samples/demo_ortho.tif
DEMO_OUT := demo_out

.PHONY: demo test test-slow lint bench clean-venv

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

demo: $(STAMP)
	@if [ ! -f infer.py ]; then echo "infer.py is not there yet (see the inference issue)"; exit 0; fi; \
	if [ ! -f models/weights/poppy_default.pt ]; then echo "the default model is not trained yet (models/weights/poppy_default.pt)"; exit 0; fi; \
	$(BIN)/python infer.py $(SAMPLE) --out $(DEMO_OUT) --overwrite && \
	echo "Outputs are in $(abspath $(DEMO_OUT))/"

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/models.py

clean-venv:
	rm -rf $(VENV)
