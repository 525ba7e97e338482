"""Issue 45 end to end: `train_online.py data=arithmetic judge=function`, the command docs/online.md's words give,
runs its rounds with the evaluation judged by the judge the user set (exact_match), and a judge that cannot serve
(judge=auto on the word problems) stops the run in one line before anything loads; then `evaluate.py` on one of
such a run's rounds with each judge: function, reward and llm judge it, auto is refused the same way."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, run_script, save_tiny_classifier

BARE = ["train_online.py", "model=tiny", "data=arithmetic", "judge=function", "online.rounds=2"]
SMALL = [  # the same run, small
    "data.max_train_pairs=8",
    "data.max_val_pairs=6",
    "data.batch_size=2",
    "online.prompts_per_round=4",
    "online.sampling.samples_per_prompt=2",
    "online.sampling.max_new_tokens=8",
    "online.sampling.batch_size=4",
    "online.eval.generation.num_prompts=3",
    "online.eval.generation.max_new_tokens=8",
    "+online.eval.bootstrap_resamples=200",
    "online.eval.accuracy.samples=2",
    "online.eval.accuracy.max_new_tokens=8",
    # The tiny model's random weights answer no problem right, so exact_match ties all of its answers: the data's
    # worked answer (right by construction) is ranked with them, as online.pairs.data_chosen does.
    "online.pairs.data_chosen=true",
]
FUNCTION = "dpo_lightning.judges.functions.FunctionJudge"
EVAL_SMALL = [
    "generation.num_prompts=3",
    "generation.max_new_tokens=8",
    "bootstrap_resamples=200",
    "max_pairs=6",
    "accuracy.samples=0",
    "accuracy.max_new_tokens=8",
]


def refused(proc: subprocess.CompletedProcess) -> str:
    """The one line a refused command stops with: its message, from `cannot judge` to the end of the line (printed
    alone, or ending a traceback)."""
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    lines = [line for line in output.splitlines() if "cannot judge this run" in line]
    assert len(lines) == 1, output[-3000:]  # once, on one line
    start = lines[0].index(" - judge") + 3 if " - judge" in lines[0] else lines[0].index(": ") + 2  # logged | raised
    return lines[0][start:].split("   (HYDRA_FULL_ERROR")[0]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    out = tmp_path_factory.mktemp("online_judges") / "run"
    run_script(*BARE, *SMALL, f"hydra.run.dir={out}")
    return out


def test_the_bare_command_runs_two_rounds_judged_by_the_judge_it_sets(bare):
    config = yaml.safe_load((bare / "config.yaml").read_text())
    assert config["judge"]["_target_"] == config["eval_judge"]["_target_"] == FUNCTION  # followed, unset
    for r in (0, 1):
        rdir = bare / f"round_{r}"
        pairs = [json.loads(line) for line in (rdir / "pairs.jsonl").read_text().splitlines()]
        assert pairs and all(p["chosen_score"] == 1.0 > p["rejected_score"] for p in pairs)  # right against wrong
        metrics = json.loads((rdir / "eval" / "metrics.json").read_text())
        assert metrics["judge"]["kind"] == "reward functions" and metrics["judge"]["model"] == "exact_match"
        assert metrics["judge"]["accuracy_on_pairs"]["value"] == 1.0  # the worked answers beat their slips
        assert metrics["accuracy"]["problems"] == 6
    with open(bare / "rounds.csv") as f:
        assert [row["round"] for row in csv.DictReader(f)] == ["0", "1"]


@pytest.mark.parametrize(
    ("overrides", "named", "advice"),
    [
        ([], "judge=auto_own cannot judge this run", "set judge=function"),  # the scorer: the evaluation follows it
        (["judge=function", "judge@eval_judge=auto"], "judge@eval_judge=auto cannot", "set judge@eval_judge=function"),
    ],
)
def test_judge_auto_on_problems_stops_the_run_in_one_line_before_anything_loads(tmp_path, overrides, named, advice):
    out = tmp_path / "run"
    proc = run(*BARE[:3], "online.rounds=2", *overrides, f"hydra.run.dir={out}")
    line = refused(proc)
    assert line.startswith(named) and advice in line and "judge@eval_judge" in line
    assert "builtin:arithmetic holds problems with answers" in line
    assert "pairs (" not in proc.stdout + proc.stderr  # no data read (the datamodule logs "train: N pairs (...)")
    assert not (out / "config.yaml").exists() and not (out / "round_0").exists()


def test_evaluate_on_such_a_run_with_each_judge(bare, tmp_path, tiny_model_dir):
    trained = bare / "round_1" / "train"
    classifier = save_tiny_classifier(trained, tmp_path / "classifier")
    judges = {
        "reward functions": ["judge=function"],
        "reward model": ["judge=reward", f"judge.model={classifier}"],
        "LLM (pairwise, both orders)": ["judge=llm", f"judge.model={tiny_model_dir}"],
    }
    out = trained / "eval"  # evaluate.py's own place for it (the loop's evaluation of the round is round_1/eval)
    for kind, judge in judges.items():
        shutil.rmtree(out, ignore_errors=True)
        run_script("evaluate.py", f"run_dir={trained}", *judge, *EVAL_SMALL)
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["judge"]["kind"] == kind and metrics["judge"]["greedy"]["wins"] is not None
        assert metrics["accuracy"]["problems"] == 6  # the held-out problems, against their answers
    shutil.rmtree(out)
    line = refused(run("evaluate.py", f"run_dir={trained}", "judge=auto", *EVAL_SMALL))
    assert line.startswith("judge=auto cannot judge this run: ") and "set judge=function" in line
    assert f"{bare / 'round_1' / 'pairs.jsonl'}'s rows carry an `answer`" in line  # the pairs it learned
    assert not (out / "metrics.json").exists() and not (out / "generations.jsonl").exists()
