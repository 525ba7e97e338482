#!/usr/bin/env bash
# The DPO paper's pipeline on HH-style data: SFT on the chosen responses, then DPO from that model.
#   bash sweeps/sft_then_dpo.sh data.path=/data/hh-rlhf/train.jsonl.gz       # any extra overrides apply to both
set -euo pipefail
cd "$(dirname "$0")/.."
root="outputs/sft_then_dpo_$(date +%Y-%m-%d_%H-%M-%S)"
python train.py experiment=hh_sft hydra.run.dir="$root/sft" "$@"
python train.py experiment=hh_dpo_from_sft model.init_from="$root/sft" hydra.run.dir="$root/dpo" "$@"
python evaluate.py run_dir="$root/dpo"
