#!/usr/bin/env bash
# Sweep DPO's beta on the current defaults (add any overrides as arguments), then summarize the jobs.
#   bash sweeps/beta_sweep.sh                       # embedded model, built-in data
#   bash sweeps/beta_sweep.sh model=tiny trainer.max_steps=20
set -euo pipefail
cd "$(dirname "$0")/.."
dir="multirun/beta_sweep_$(date +%Y-%m-%d_%H-%M-%S)"
python train.py -m hydra.sweep.dir="$dir" loss.beta=0.01,0.05,0.1,0.5 "$@"
python sweeps/summarize.py "$dir" --x loss.beta
