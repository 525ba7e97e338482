#!/usr/bin/env bash
# The GPU checks of the performance work (issue 14), as two prepared phases for a lent GPU machine.
#
#   bash bench/gpu_check.sh <out-dir>               # PHASE=bench (default): FlexAttention exactness on the GPU, then
#                                                   #   the side-by-side benchmark in interleaved rounds, profiled
#   PHASE=big bash bench/gpu_check.sh <out-dir>     # exact full DPO of a Llama-3-8B shape through train.py, and TRL
#                                                   #   on the same shape in the same run
#   PHASE=train bash bench/gpu_check.sh <out-dir>   # train.py with bf16, Lightning's FSDP, precompute+compile, QLoRA
#   DRY_RUN=1 [PHASE=...] bash bench/gpu_check.sh <out-dir>   # the same steps, tiny and on CPU: checks the script
#
# Needs, beside the repo: wheels in .whl/ for what the machine lacks (hydra-core, omegaconf, antlr4, datasets, dill,
# multiprocess, trl), a tokenizer folder (TOKENIZER, default .devcarry/tokenizer: the embedded SmolLM2 tokenizer)
# and the HH-RLHF test file (DATA, default .devcarry/test.jsonl.gz). Each step has its own time limit and writes
# its log to <out-dir>, so one failing step never hides the others.
set -uo pipefail
OUT=${1:-gpu_check_out}
PHASE=${PHASE:-bench}
mkdir -p "$OUT"
TOK=${TOKENIZER:-.devcarry/tokenizer}
DATA=${DATA:-.devcarry/test.jsonl.gz}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=disabled HYDRA_FULL_ERROR=1
export DPO_LIGHTNING_CACHE=/tmp/dpo_cache
if [ "${DRY_RUN:-0}" != 1 ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps .whl/*.whl 2>&1 | tail -2
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import torch, transformers, lightning, trl, peft; print('torch', torch.__version__, '| transformers', transformers.__version__, '| lightning', lightning.__version__, '| trl', trl.__version__, '| peft', peft.__version__)"
} > "$OUT/env_$PHASE.txt" 2>&1
cat "$OUT/env_$PHASE.txt"

step() {  # step <name> <seconds> <command...>: run, keep its log, report how it ended
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name: exit $? in $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
}

if [ "$PHASE" = bench ]; then
  # 1. FlexAttention's packed layout against the textbook layout on the GPU (log-probs, gradients, the mask itself).
  [ "${RESUME:-0}" = 1 ] || step flex_exactness 120 python3 -m pytest -q -p no:cacheprovider tests/unit/test_packing.py -k "flex or packed"
  tail -3 "$OUT/flex_exactness.log"
  # 2. Ours against TRL's DPOTrainer, 1B Llama shape, bf16, batch 8, max_length 1024: each variant in 3 timed rounds,
  #    interleaved, after an untimed warm round (ours profiled in it): our default, our low-memory setup, TRL's
  #    default and its lean setup. A child takes ~40 s on an H100, so the 16 children need ~11 minutes: the step stops
  #    at its limit with every finished round saved, and RESUME=1 (the next call, on the still-warm machine) runs
  #    the rounds still missing. VARIANTS overrides the set (e.g. add ours:attn=flex_attention).
  ARGS=(--preset gpu --tokenizer "$TOK" --max-rounds 3)
  if [ "${DRY_RUN:-0}" = 1 ]; then
    ARGS=(--model tiny --device cpu --dtype float32 --batch 2 --steps 1 --warmup 1 --max-length 128
          --max-prompt-length 64 --rounds 2)
  fi
  if [ "${RESUME:-0}" = 1 ]; then ARGS+=(--resume); else ARGS+=(--profile); fi
  VARIANTS=${VARIANTS:-"ours;ours:precompute_ref=true,checkpointing=true;trl;trl:precompute_ref=true,checkpointing=true"}
  BENCH_OUT=/tmp/gpu_check_bench  # outside $OUT, which every call empties: RESUME=1 continues from it
  [ "${RESUME:-0}" = 1 ] || rm -rf "$BENCH_OUT"
  step bench "${BENCH_LIMIT:-500}" python3 bench/throughput.py "${ARGS[@]}" --data "$DATA" --out "$BENCH_OUT" \
    --variants "$VARIANTS"
  mkdir -p "$OUT/bench" && cp "$BENCH_OUT"/results.* "$BENCH_OUT"/profile.txt "$OUT/bench/" 2>/dev/null
  tail -22 "$OUT/bench.log"
  head -45 "$OUT/bench/profile.txt" 2>/dev/null
fi

if [ "$PHASE" = big ]; then
  # 3. Exact full DPO (no LoRA) of a Llama-3-8B shape (random init, bf16, untied head) through train.py:
  #    experiment=low_memory (reference log-probs precomputed, then the reference freed; activation checkpointing),
  #    batch 4 pairs, max_length 1024, real HH pairs, 12 optimizer steps; StepTimer logs s/step, peak memory, MFU.
  SHAPE=llama3_8b DEVICE=cuda TRAINER="trainer=gpu trainer.precision=bf16-true" STEPS=12
  if [ "${DRY_RUN:-0}" = 1 ]; then SHAPE=tiny DEVICE=cpu TRAINER="trainer=cpu trainer.precision=bf16-true" STEPS=3; fi
  step train_8b 300 python3 train.py experiment=low_memory model=random model.shape=$SHAPE model.device=$DEVICE \
    model.tokenizer_from=$TOK data=hh data.path=$DATA data.max_length=1024 data.max_prompt_length=512 \
    data.batch_size=4 data.max_train_pairs=56 data.max_val_pairs=8 $TRAINER trainer.max_steps=$STEPS \
    +trainer.limit_val_batches=0 +trainer.enable_checkpointing=false callbacks=none \
    +callbacks.step_timer._target_=dpo_lightning.callbacks.StepTimer +callbacks.step_timer.peak_tflops=989 \
    logger=csv hydra.run.dir=/tmp/runs/train_8b
  cp /tmp/runs/train_8b/csv/metrics.csv "$OUT/train_8b_metrics.csv" 2>/dev/null
  cp /tmp/runs/train_8b/metrics.json "$OUT/train_8b_metrics.json" 2>/dev/null
  tail -4 "$OUT/train_8b.log"
  # 4. TRL on the same shape, batch and pairs, in the same run: its lean setup and its default.
  ARGS=(--model llama3_8b --tokenizer "$TOK" --batch 4 --max-length 1024 --max-prompt-length 512 --dtype bfloat16
        --device cuda --steps 4 --warmup 1)
  if [ "${DRY_RUN:-0}" = 1 ]; then
    ARGS=(--model tiny --device cpu --dtype float32 --batch 2 --steps 1 --warmup 1 --max-length 128 --max-prompt-length 64)
  fi
  step trl_8b 240 python3 bench/throughput.py "${ARGS[@]}" --data "$DATA" --rounds 1 --no-warm-round --no-parity \
    --out "$OUT/trl_8b" --variants "trl:precompute_ref=true,checkpointing=true;trl"
  tail -8 "$OUT/trl_8b.log"
fi

if [ "$PHASE" = train ]; then
  # 5. train.py on the GPU with the trainer options (tiny model, built-in data, a few steps each): bf16 autocast,
  #    Lightning's FSDP with the tiled head and checkpointing, the precomputed reference with compile, QLoRA.
  TINY="model=tiny model.tokenizer_from=$TOK data.max_train_pairs=32 data.max_val_pairs=16 trainer.max_steps=4 logger=csv"
  run() {  # run <name> <overrides...>: one train.py job; print its metrics and check final/ loads
    local name=$1; shift
    step "train_$name" 90 python3 train.py $TINY "$@" hydra.run.dir=/tmp/runs/$name
    python3 - "$name" >> "$OUT/train_checks.txt" 2>&1 <<'EOF'
import json, sys, pathlib
run = pathlib.Path("/tmp/runs") / sys.argv[1]
m = json.loads((run / "metrics.json").read_text())
from transformers import AutoModelForCausalLM
final = AutoModelForCausalLM.from_pretrained(run / "final")
print(sys.argv[1], "final/ loads:", type(final).__name__, {k: round(v, 4) for k, v in m.items() if k.startswith("val/")})
EOF
  }
  GPU="trainer=gpu"
  [ "${DRY_RUN:-0}" = 1 ] && GPU="trainer=cpu"
  run bf16_mixed $GPU trainer.precision=bf16-mixed
  [ "${DRY_RUN:-0}" = 1 ] || run fsdp trainer=fsdp trainer.devices=1 trainer.precision=bf16-mixed \
    'trainer.strategy.activation_checkpointing_policy={_target_: dpo_lightning.strategies.decoder_layers}'
  run precompute_compile $GPU module.precompute_ref=true module.compile=true
  if python3 -c "import bitsandbytes" 2>/dev/null; then  # QLoRA needs bitsandbytes (carry its wheel if absent)
    python3 -c "from dpo_lightning.models import build_tiny_llama as b; m = b(tokenizer_from='$TOK', hidden_size=64, intermediate_size=128); m.model.save_pretrained('/tmp/tiny64'); m.tokenizer.save_pretrained('/tmp/tiny64')" \
      && run qlora trainer=gpu peft=qlora model.name_or_path=/tmp/tiny64
  fi
  cat "$OUT/train_checks.txt"
fi
cat "$OUT/summary.txt"
