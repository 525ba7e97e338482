#!/usr/bin/env bash
# Sweep DPO's beta on the current defaults (add any overrides as arguments); a summary beside the jobs.
#   bash sweeps/beta_sweep.sh                       # embedded model, built-in data
#   bash sweeps/beta_sweep.sh model=tiny trainer.max_steps=20
set -euo pipefail
cd "$(dirname "$0")/.."
dir="multirun/beta_sweep_$(date +%Y-%m-%d_%H-%M-%S)"
# The default pipeline's SFT stage is trained once, in $dir/stages/, and every job's DPO starts from it (SFT= sweeps
# DPO from the model as loaded). The summary (summary.csv, .md, .png) is written beside the jobs as they end.
if [ -n "${SFT-1}" ]; then start=(); else start=(before=null); fi
python train.py -m hydra.sweep.dir="$dir" "${start[@]}" loss.beta=0.01,0.05,0.1,0.5 "$@"
