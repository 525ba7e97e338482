#!/usr/bin/env bash
# Compare preference losses on the current defaults (add overrides as arguments); a summary beside the jobs.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="multirun/loss_sweep_$(date +%Y-%m-%d_%H-%M-%S)"
# The default pipeline's SFT stage is trained once, in $dir/stages/, and every job's DPO starts from it (SFT= sweeps
# DPO from the model as loaded). The summary (summary.csv, .md, .png) is written beside the jobs as they end.
if [ -n "${SFT-1}" ]; then start=(); else start=(before=null); fi
python train.py -m hydra.sweep.dir="$dir" "${start[@]}" loss=dpo,ipo,hinge,robust,simpo,orpo,rpo,nca_pair "$@"
