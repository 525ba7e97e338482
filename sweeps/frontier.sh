#!/usr/bin/env bash
# The reward-KL frontier (the DPO paper's Figure 2): a Hydra multirun over beta (and optionally loss variants), each
# job evaluated by the same judge, then plotted as judge reward against KL(pi || pi_ref) with the base model.
#   bash sweeps/frontier.sh                                          # embedded model, built-in data
#   BETAS=0.05,0.5 LOSSES=dpo,ipo bash sweeps/frontier.sh trainer.max_steps=20
#   JUDGE=outputs/reward/<run>/final bash sweeps/frontier.sh       # an existing judge (a reward model folder or hub id)
# Without JUDGE, one is trained first with train_reward.py on pairs disjoint from the training pairs: JUDGE_DATA
# (default builtin:judge, the built-in set's judge split; give a file or hub id for other data, or JUDGE_DATA= to
# train it on the sweep's own pairs, which every evaluation then flags as self-trained). JUDGE_ARGS: its overrides.
# EVAL_ARGS: overrides of every evaluate.py call (e.g. generation.num_prompts=50). Results: <dir>/frontier.{csv,md,png}:
# per beta, the reward-KL point and where the recipe starts to collapse (opening share, distinct-2, displacement).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
dir="${SWEEP_DIR:-multirun/frontier_$(date +%Y-%m-%d_%H-%M-%S)}"
mkdir -p "$dir"
if [ -z "${JUDGE:-}" ]; then
  JUDGE_DATA=${JUDGE_DATA-builtin:judge}
  # shellcheck disable=SC2086
  $PYTHON train_reward.py hydra.run.dir="$dir/judge" "$@" ${JUDGE_DATA:+data.path=$JUDGE_DATA} ${JUDGE_ARGS:-}
  JUDGE="$dir/judge/final"
  [ -d "$JUDGE/merged" ] && JUDGE="$JUDGE/merged"   # a LoRA judge: its merged copy
fi
sweep=(loss.beta="${BETAS:-0.01,0.05,0.1,0.5}")
[ -n "${LOSSES:-}" ] && sweep+=(loss="$LOSSES")
# The default pipeline's SFT stage once, every job's DPO from it (SFT= sweeps DPO from the model as loaded)
if [ -n "${SFT-1}" ]; then
  $PYTHON train.py stage=sft hydra.run.dir="$dir/sft" "$@"
  start=(before=null model.init_from="$dir/sft")
else
  start=(before=null)
fi
$PYTHON train.py -m hydra.sweep.dir="$dir" "${start[@]}" "${sweep[@]}" "$@"
for job in "$dir"/[0-9]*/; do
  # shellcheck disable=SC2086
  $PYTHON evaluate.py run_dir="${job%/}" judge=reward judge.model="$JUDGE" ${EVAL_ARGS:-}
done
$PYTHON sweeps/summarize.py "$dir" --frontier
