#!/usr/bin/env bash
# Compare preference losses on the current defaults (add overrides as arguments), then summarize the jobs.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="multirun/loss_sweep_$(date +%Y-%m-%d_%H-%M-%S)"
# The default pipeline's SFT stage once, every job's DPO from it (SFT= sweeps DPO from the model as loaded)
if [ -n "${SFT-1}" ]; then
  python train.py stage=sft hydra.run.dir="$dir/sft" "$@"
  start=(before=null model.init_from="$dir/sft")
else
  start=(before=null)
fi
python train.py -m hydra.sweep.dir="$dir" "${start[@]}" loss=dpo,ipo,hinge,robust,simpo,orpo,rpo,nca_pair "$@"
python sweeps/summarize.py "$dir" --x loss._target_
