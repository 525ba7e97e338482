#!/usr/bin/env bash
# Compare preference losses on the current defaults (add overrides as arguments), then summarize the jobs.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="multirun/loss_sweep_$(date +%Y-%m-%d_%H-%M-%S)"
python train.py -m hydra.sweep.dir="$dir" loss=dpo,ipo,hinge,robust,simpo,orpo,rpo,nca_pair "$@"
python sweeps/summarize.py "$dir" --x loss._target_
