#!/usr/bin/env bash
# The GPU checks of the performance (issue 5) and scale (issue 4) work, as one script for a lent GPU machine.
#
#   bash bench/gpu_check.sh <out-dir>                 # benchmark with every switch, LM-head check (under 8 minutes)
#   TRAIN_CHECKS=1 bash bench/gpu_check.sh <out-dir>  # plus train.py with bf16, FSDP, precompute+compile, QLoRA
#   DRY_RUN=1 bash bench/gpu_check.sh <out-dir>       # the same steps, tiny and on CPU: checks the script itself
#
# Needs, beside the repo: wheels in .whl/ for what the machine lacks (hydra-core, omegaconf, antlr4, datasets, dill,
# multiprocess, trl), a tokenizer folder (TOKENIZER, default .devcarry/tokenizer: the embedded SmolLM2 tokenizer)
# and the HH-RLHF test file (DATA, default .devcarry/test.jsonl.gz). Each step has its own time limit and writes
# its log to <out-dir>, so one failing step never hides the others.
set -uo pipefail
OUT=${1:-gpu_check_out}
mkdir -p "$OUT"
TOK=${TOKENIZER:-.devcarry/tokenizer}
DATA=${DATA:-.devcarry/test.jsonl.gz}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=disabled HYDRA_FULL_ERROR=1
export DPO_LIGHTNING_CACHE=/tmp/dpo_cache
if [ "${DRY_RUN:-0}" != 1 ] && ls .whl/*.whl >/dev/null 2>&1; then python3 -m pip install -q --no-index --no-deps .whl/*.whl 2>&1 | tail -2; fi
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

# 1. Issue 5: ours against TRL's DPOTrainer, 1B Llama shape, bf16, batch 8, max_length 1024, all in one run so every
#    ratio is side by side: both defaults; both lean setups (reference log-probs precomputed, no reference model held,
#    activation checkpointing: the memory target); TRL with checkpointing alone (its DPOConfig default); then our
#    switches one at a time (precomputed reference, checkpointing, bf16 autocast over fp32 weights); TRL with its
#    non-fused AdamW (to rule the optimizer out of its timing); compile last, as it takes longest.
BENCH_ARGS=(--preset gpu --tokenizer "$TOK") HEAD_ARGS=(--device cuda --rows 2048)
if [ "${DRY_RUN:-0}" = 1 ]; then  # tiny and on CPU, with the embedded tokenizer
  BENCH_ARGS=(--model tiny --device cpu --dtype float32 --batch 2 --steps 1 --warmup 1 --max-length 128 --max-prompt-length 64)
  HEAD_ARGS=(--rows 64 --hidden 32 --vocab 2000 --dtype float32)
fi
LEAN=precompute_ref=true,checkpointing=true
step bench 450 python3 bench/throughput.py "${BENCH_ARGS[@]}" --data "$DATA" --out /tmp/gpu_check_bench \
  --variants "ours;trl;ours:$LEAN;trl:$LEAN;trl:checkpointing=true;ours:precompute_ref=true;ours:checkpointing=true;ours:dtype=float32,precision=bf16-mixed;trl:optim=foreach;ours:compile=true"
for f in results.md results.json; do cp "/tmp/gpu_check_bench/$f" "$OUT/bench_$f" 2>/dev/null; done
tail -20 "$OUT/bench.log"
# 2. The LM head alone at this workload's shape (2048 tokens, 2048 x 128256, bf16): peak memory and time, tiled
#    against the plain full-logits computation.
step head 100 python3 bench/head_memory.py "${HEAD_ARGS[@]}"
cat "$OUT/head.log"
[ "${TRAIN_CHECKS:-0}" = 1 ] || { cat "$OUT/summary.txt"; exit 0; }

# 3. Issue 4: train.py on the GPU with the trainer options (tiny model, built-in data, a few steps each).
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
run bf16_mixed trainer=gpu trainer.precision=bf16-mixed
run fsdp trainer=fsdp trainer.devices=1 trainer.precision=bf16-mixed \
  'trainer.strategy.activation_checkpointing_policy={_target_: dpo_lightning.strategies.decoder_layers}'
run precompute_compile trainer=gpu module.precompute_ref=true module.compile=true
if python3 -c "import bitsandbytes" 2>/dev/null; then  # QLoRA needs bitsandbytes (carry its wheel if absent)
  python3 -c "from dpo_lightning.models import build_tiny_llama as b; m = b(tokenizer_from='$TOK', hidden_size=64, intermediate_size=128); m.model.save_pretrained('/tmp/tiny64'); m.tokenizer.save_pretrained('/tmp/tiny64')" \
    && run qlora trainer=gpu peft=qlora model.name_or_path=/tmp/tiny64
fi
cat "$OUT/train_checks.txt"
cat "$OUT/summary.txt"
