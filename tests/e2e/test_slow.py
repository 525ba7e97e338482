"""Long checks, marked `slow` and left out of `make test` (run them with `make test-slow`; the main job's alone,
`pytest -m slow tests/e2e/test_slow.py -k main_job`, took 21 min 8 s on 2 cores on 2026-12-08, 8 of them training
the judge, once):
the README's main job end to end with the figures it states, and the benchmark's parity gate on the real weights."""

from __future__ import annotations

import json

import pytest

from conftest import HH_TEST, check_run_outputs, requires_hh, run_script

pytestmark = pytest.mark.slow


def test_the_main_job_trains_and_evaluates_as_the_readme_says(tmp_path):
    """`make train`: `python train.py` (its SFT stage on the chosen answers into <run>/sft, then LoRA DPO with RPO's
    NLL term from it), then evaluate.py against the pretrained model with `judge=auto` (a reward model of the disjoint
    judge split and its derived negatives, cached), as the Makefile runs them; the README's figures
    (docs/main_job.md) against the issue's targets."""
    run = tmp_path / "main"
    proc = run_script("train.py", f"hydra.run.dir={run}", timeout=3600)
    assert "2. this run" in proc.stdout and "rpo_light" in (run / "plan.txt").read_text()  # the plan, said first
    assert not (run / "sft" / "checkpoints").exists() and (run / "sft" / "final").is_dir()  # the stage cleaned
    metrics = check_run_outputs(run)
    assert metrics["val/rewards/accuracies"] >= 0.95  # README: 0.98 on the 50 held-out pairs
    evaluate = ["base_model=pretrained", "judge=auto", "generation.num_prompts=50", "generation.max_new_tokens=64"]
    run_script("evaluate.py", f"run_dir={run}", *evaluate, timeout=3600)
    report = json.loads((run / "eval" / "metrics.json").read_text())
    assert report["pairs"] == 50
    rows = {r["key"]: r for r in report["summary"]}
    base, dpo = ({k: r[side]["value"] for k, r in rows.items() if r[side]} for side in ("base", "dpo"))
    assert dpo["preference_accuracy_per_token"] >= 0.8 > base["preference_accuracy_per_token"]  # 0.86 (base 0.40)
    assert dpo["logp_per_token_chosen"] >= base["logp_per_token_chosen"]  # no displacement: -3.534 >= -3.627
    assert dpo["opening_share"] <= 0.2 < base["opening_share"] + 0.01  # 0.18 (base 0.24)
    assert dpo["distinct_2"] >= base["distinct_2"]  # 0.688 against 0.654
    assert dpo["repetition"] <= base["repetition"]  # 0.026 against 0.105
    win = rows["judge_win_rate_greedy"]["dpo"]
    assert win["value"] >= 0.75 and win["ci_low"] > 0.6  # 0.78 [0.65, 0.87] by the disjoint judge
    assert dpo["judge_win_rate_reference"] < 0.5  # 0.38: over what the answers show (warned)
    assert any(w.startswith("The judge prefers DPO's answers to the hand-written") for w in report["warnings"])
    assert report["judge"]["accuracy_on_pairs"]["value"] >= 0.9
    assert not any("own homework" in w for w in report["warnings"])  # the judge never saw the training pairs
    assert 0 < report["kl"]["kl_per_token"] < 2


@requires_hh
def test_benchmark_parity_on_the_real_weights_and_pairs(tmp_path):
    """The CPU preset's parity gate (real SmolLM2 weights, real HH pairs): our log-probs and loss against TRL's."""
    out = tmp_path / "bench"
    run_script(
        "bench/throughput.py",
        "--data",
        str(HH_TEST),
        "--steps",
        "1",
        "--warmup",
        "1",
        "--rounds",
        "1",
        "--no-warm-round",
        "--variants",
        "ours;trl",
        "--out",
        str(out),
        timeout=1800,
    )
    saved = json.loads((out / "results.json").read_text())
    assert saved["parity"]["ok"] and saved["parity"]["logps_max_rel_diff"] <= 1e-4, saved["parity"]
    assert all("error" not in r for r in saved["results"])
