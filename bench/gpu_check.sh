#!/usr/bin/env bash
# The GPU checks of the performance work (issue 22), prepared for one call on a lent GPU machine.
#
#   bash bench/gpu_check.sh <out-dir>               # PHASE=all (default): bench, big, train, sample, qlora, each
#                                                   #   under its own time limit (10 minutes in all)
#   PHASE=bench bash bench/gpu_check.sh <out-dir>   # ours (host-light step, module=fast) against TRL's DPOTrainer,
#                                                   #   1B Llama shape, bf16, in interleaved rounds after a warm round
#   PHASE=big bash bench/gpu_check.sh <out-dir>     # exact full DPO of a Llama-3-8B shape through train.py
#   PHASE=train bash bench/gpu_check.sh <out-dir>   # train.py under Lightning's FSDP, then FSDP2, with the tiled head
#   PHASE=sample bash bench/gpu_check.sh <out-dir>  # the online loop's sampler: K=8 x 64 prompts x 256 new tokens,
#                                                   #   1B shape, dynamic / static cache / compiled (bench/sampling.py)
#   PHASE=qlora bash bench/gpu_check.sh <out-dir>   # an 8B shape under QLoRA, then LoRA: step time and peak memory
#   DRY_RUN=1 [PHASE=...] bash bench/gpu_check.sh <out-dir>   # the same steps, tiny and on CPU: checks the script
#
# Needs, beside the repo: wheels in .whl/ for what the machine lacks (hydra-core, omegaconf, antlr4, datasets, dill,
# multiprocess, trl), a tokenizer folder (TOKENIZER, default .devcarry/tokenizer: the embedded SmolLM2 tokenizer)
# and the HH-RLHF test file (DATA, default .devcarry/test.jsonl.gz). Each step has its own time limit and writes
# its log to <out-dir>, so one failing step never hides the others.
set -uo pipefail
OUT=${1:-gpu_check_out}
PHASE=${PHASE:-all}
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
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

step() {  # step <name> <seconds> <command...>: run, keep its log, report how it ended
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name: exit $? in $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
}
want() { [ "$PHASE" = all ] || [ "$PHASE" = "$1" ]; }

if want bench; then
  # Ours against TRL's DPOTrainer, Llama-3.2-1B shape, bf16, batch 8, max_length 1024, real HH pairs: an untimed
  # warm round (ours:light profiled), then 3 timed rounds, interleaved. ours:light is the host-light step
  # (module=fast: regional compile, large LM-head tiles, no host sync);
  # the last variant is experiment=low_memory on the host-light step. VARIANTS overrides the set (add `ours` for the
  # eager step), RESUME=1 (the next call, the machine still warm) continues the rounds, BENCH_LIMIT the step's
  # seconds. The fp32 parity gate (ours against TRL) runs with PARITY=1; CPU runs and the tests check it anyway.
  ARGS=(--preset gpu --tokenizer "$TOK" --max-rounds 3 --steps "${BENCH_STEPS:-6}")
  [ "${PARITY:-0}" = 1 ] || ARGS+=(--no-parity)
  if [ "${DRY_RUN:-0}" = 1 ]; then
    ARGS=(--model tiny --device cpu --dtype float32 --batch 2 --steps 1 --warmup 1 --max-length 128
          --max-prompt-length 64 --rounds 2)
    BENCH_LIMIT=${BENCH_LIMIT:-600}  # CPU children of the benchmark take tens of seconds each
  fi
  if [ "${RESUME:-0}" = 1 ]; then ARGS+=(--resume); else ARGS+=(--profile); fi
  VARIANTS=${VARIANTS:-"ours:light=true;trl;ours:light=true,precompute_ref=true,checkpointing=true"}
  BENCH_OUT=/tmp/gpu_check_bench  # outside $OUT, which every call empties: RESUME=1 continues from it
  [ "${RESUME:-0}" = 1 ] || rm -rf "$BENCH_OUT"
  step bench "${BENCH_LIMIT:-170}" python3 bench/throughput.py "${ARGS[@]}" --data "$DATA" --out "$BENCH_OUT" \
    --variants "$VARIANTS"
  mkdir -p "$OUT/bench" && cp "$BENCH_OUT"/results.* "$BENCH_OUT"/profile.txt "$OUT/bench/" 2>/dev/null
  tail -14 "$OUT/bench.log"
  grep -m1 -A28 "Name" "$OUT/bench/profile.txt" 2>/dev/null | head -30
fi

if want big; then
  # Exact full DPO (no LoRA) of a Llama-3-8B shape (random init, bf16, untied head) through train.py:
  # experiment=low_memory (reference log-probs precomputed, the reference freed, activation checkpointing) on the
  # host-light step (module=fast), batch 4 pairs, max_length 1024, real HH pairs, 12 optimizer steps; StepTimer
  # logs s/step and MFU every 4 steps.
  SHAPE=llama3_8b DEVICE=cuda TRAINER="trainer=gpu trainer.precision=bf16-true" STEPS=12
  if [ "${DRY_RUN:-0}" = 1 ]; then SHAPE=tiny DEVICE=cpu TRAINER="trainer=cpu trainer.precision=bf16-true" STEPS=3; fi
  step train_8b "${BIG_LIMIT:-110}" python3 train.py experiment=low_memory module=fast model=random before=null \
    model.shape=$SHAPE model.dtype=bfloat16 model.device=$DEVICE trainer.accumulate_grad_batches=1 model.tokenizer_from=$TOK data=hh data.path=$DATA data.max_length=1024 \
    data.max_prompt_length=512 data.batch_size=4 data.max_train_pairs=56 data.max_val_pairs=8 $TRAINER \
    trainer.max_steps=$STEPS trainer.log_every_n_steps=4 +trainer.limit_val_batches=0 \
    +trainer.enable_checkpointing=false callbacks=none +callbacks.step_timer._target_=dpo_lightning.lightning.callbacks.StepTimer \
    +callbacks.step_timer.peak_tflops=989 logger=csv hydra.run.dir=/tmp/runs/train_8b
  cp /tmp/runs/train_8b/csv/metrics.csv "$OUT/train_8b_metrics.csv" 2>/dev/null
  cp /tmp/runs/train_8b/metrics.json "$OUT/train_8b_metrics.json" 2>/dev/null
  grep -E "reference log-probs|Metrics" "$OUT/train_8b.log" | cut -c1-400
fi

if want train; then
  # train.py under Lightning's FSDP on the GPU (tiny model, built-in data, a few steps): the tiled head inside the
  # root unit, activation checkpointing per decoder layer, and the precomputed reference.
  TINY="model=tiny model.tokenizer_from=$TOK data.max_train_pairs=32 data.max_val_pairs=16 trainer.max_steps=4 logger=csv"
  GPU=(trainer=fsdp trainer.devices=1 trainer.precision=bf16-mixed
       'trainer.strategy.activation_checkpointing_policy={_target_: dpo_lightning.lightning.strategies.decoder_layers}')
  [ "${DRY_RUN:-0}" = 1 ] && GPU=(trainer=cpu)
  step train_fsdp "${TRAIN_LIMIT:-40}" python3 train.py $TINY before=null "${GPU[@]}" module.precompute_ref=true \
    hydra.run.dir=/tmp/runs/fsdp
  # the same run under FSDP2 (trainer=fsdp2: fully_shard per decoder layer, the module the root unit); DRY_RUN: two
  # gloo CPU processes
  GPU2=(trainer=fsdp2 trainer.devices=1 trainer.precision=bf16-mixed module.activation_checkpointing=true)
  [ "${DRY_RUN:-0}" = 1 ] && GPU2=(trainer=fsdp2 trainer.accelerator=cpu trainer.devices=2 trainer.precision=32-true
    trainer.strategy.process_group_backend=gloo data.batch_size=2)
  step train_fsdp2 "${TRAIN_LIMIT:-40}" python3 train.py $TINY before=null "${GPU2[@]}" module.precompute_ref=true \
    hydra.run.dir=/tmp/runs/fsdp2
  for run in fsdp fsdp2; do
    python3 -c "import json; m = json.load(open('/tmp/runs/$run/metrics.json')); print('$run', {k: round(v, 4) for k, v in m.items() if k.startswith('val/') or k in ('train/step_seconds', 'train/peak_memory_gib')})"
  done 2>&1 | tee "$OUT/train_checks.txt"
fi
if want sample; then
  # The online loop's sampling phase on the GPU (issue 32): HFSampler (model.generate with the KV cache) on the 1B
  # shape, K = 8 answers x 64 prompts x 256 new tokens, 512 rows a chunk; transformers' dynamic cache, a static one,
  # and the static one compiled.
  SARGS=(--shape llama1b --device cuda --dtype bfloat16 --prompts 64 --k 8 --new-tokens 256 --batch 512)
  [ "${DRY_RUN:-0}" = 1 ] && SARGS=(--shape tiny --device cpu --dtype float32 --prompts 4 --k 2 --new-tokens 8 --batch 4)
  step sample "${SAMPLE_LIMIT:-90}" python3 bench/sampling.py "${SARGS[@]}" --tokenizer "$TOK" --out "$OUT/sampling.json"
  grep '^{' "$OUT/sample.log"
fi

if want qlora; then
  # QLoRA of a Llama-3-8B shape on one GPU (issue 32): random bf16 weights saved once (QLoRA quantizes saved weights
  # as it loads them), then a few steps of peft=qlora and of peft=lora (bf16 base) through train.py, StepTimer's
  # step time and peak memory for each; full DPO of the same shape is the `big` phase.
  SHAPE=llama3_8b DEVICE=cuda TRAINER="trainer=gpu trainer.precision=bf16-true"
  [ "${DRY_RUN:-0}" = 1 ] && SHAPE=tiny DEVICE=cpu TRAINER="trainer=cpu"
  step save_8b "${SAVE_LIMIT:-60}" python3 -c "
import sys; sys.path.insert(0, 'src')
from dpo_lightning.models import build_random_llama, build_tiny_llama
m = build_tiny_llama('$TOK') if '$SHAPE' == 'tiny' else build_random_llama('$SHAPE', '$TOK', 'bfloat16', '$DEVICE')
m.model.save_pretrained('/tmp/random_$SHAPE'); m.tokenizer.save_pretrained('/tmp/random_$SHAPE')"
  for PEFT in qlora lora; do
    [ "${DRY_RUN:-0}" = 1 ] && [ $PEFT = qlora ] && continue  # 4-bit layers need CUDA and bitsandbytes
    step train_$PEFT "${PEFT_LIMIT:-45}" python3 train.py model=llama3_8b model.name_or_path=/tmp/random_$SHAPE \
      peft=$PEFT model.dtype=bfloat16 before=null data=hh data.path=$DATA data.max_length=1024 data.max_prompt_length=512 \
      data.batch_size=4 data.max_train_pairs=24 data.max_val_pairs=4 trainer.accumulate_grad_batches=1 $TRAINER \
      trainer.max_steps=6 trainer.log_every_n_steps=2 +trainer.limit_val_batches=0 +trainer.enable_checkpointing=false \
      callbacks=none +callbacks.step_timer._target_=dpo_lightning.lightning.callbacks.StepTimer \
      +callbacks.step_timer.peak_tflops=989 logger=csv hydra.run.dir=/tmp/runs/$PEFT
    cp /tmp/runs/$PEFT/csv/metrics.csv "$OUT/train_${PEFT}_metrics.csv" 2>/dev/null
  done
  rm -rf /tmp/random_$SHAPE
fi
cat "$OUT/summary.txt"
