"""Hydra's multiruns: a real 2-point beta sweep ending with its summary (the callback in conf/train.yaml), one whose
jobs fail, a real 2-trial Optuna search, the SLURM launcher option, and the reward-KL frontier sweep."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, SMOKE, check_run_outputs, compose, run_script, smoke

FAST = ("trainer.max_steps=2", "callbacks.sample_generations.num_prompts=0")


def summary_rows(sweep):
    with open(sweep / "summary.csv") as f:
        return list(csv.DictReader(f))


def summary_jobs(sweep):
    """Each row's job, status, swept beta and loss option."""
    return [(r["job"], r["status"], r["loss.beta"], r["loss"]) for r in summary_rows(sweep)]


def test_a_multirun_ends_with_its_summary_and_a_line_naming_the_best_job(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_script("train.py", "-m", "loss.beta=0.1,0.5", *SMOKE, *FAST, f"hydra.sweep.dir={sweep}")
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    assert [yaml.safe_load((p / "config.yaml").read_text())["loss"]["beta"] for p in jobs] == [0.1, 0.5]
    accuracies = [check_run_outputs(job)["val/rewards/accuracies"] for job in jobs]

    rows = summary_rows(sweep)
    assert list(rows[0])[:4] == ["job", "status", "loss.beta", "loss"]  # the swept key found, not given
    assert summary_jobs(sweep) == [("0", "ok", "0.1", "dpo"), ("1", "ok", "0.5", "dpo")]
    assert [float(r["val/rewards/accuracies"]) for r in rows] == pytest.approx(accuracies)
    assert "| 0 | ok | 0.1 | dpo |" in (sweep / "summary.md").read_text()
    assert (sweep / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = max(range(2), key=lambda i: accuracies[i])  # the first of equals, as the summary picks
    line = next(line for line in (proc.stdout + proc.stderr).splitlines() if "Sweep summary: " in line)
    other = 1 - best
    tie = (
        f", tied with job {other}: the metric does not tell them apart" if accuracies[other] == accuracies[best] else ""
    )
    assert line.split("Sweep summary: ")[1] == (
        f"{sweep}/{{summary.csv,summary.md,summary.png}}: 2 jobs, none failed; best val/rewards/accuracies "
        f"(highest): job {best} (loss.beta={rows[best]['loss.beta']}) {accuracies[best]:.4g}{tie}"
    )

    # sweeps/summarize.py after the fact: the same package code, the same table
    written = summary_rows(sweep)
    (sweep / "summary.csv").unlink()
    summarize = subprocess.run(
        [sys.executable, "sweeps/summarize.py", str(sweep)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert summarize.returncode == 0, summarize.stderr[-4000:]
    assert summary_rows(sweep) == written and summarize.stdout.strip() == line.split("] ", 1)[1]


def test_a_multirun_whose_jobs_fail_lists_them_as_failed(tmp_path):
    """Hydra's basic sweeper stops after a failed job without its multirun end: the summary written as each job
    ended still lists every job, failed ones as failed, and says where it is."""
    sweep = tmp_path / "failing"
    cmd = ["train.py", "-m", "loss.beta=0.1,0.5", *SMOKE, *FAST, "+callbacks.boom._target_=no_such_module.Callback"]
    proc = subprocess.run(
        [sys.executable, *cmd, f"hydra.sweep.dir={sweep}"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode != 0
    assert summary_jobs(sweep) == [("0", "failed", "0.1", "dpo"), ("1", "failed", "0.5", "dpo")]
    assert not (sweep / "summary.png").exists()  # nothing finished, nothing to plot
    where = f"{sweep}/{{summary.csv,summary.md}}"
    assert f"Sweep summary: {where}: 2 jobs, 2 failed (job 0, 1:" in proc.stdout + proc.stderr


def test_optuna_search_runs_trials_and_reports_the_best(tmp_path):
    sweep = tmp_path / "optuna"
    # (debug=smoke sets optimizer.lr in a config file, which the search overrides; a command-line value would fix it)
    proc = run_script(
        "train.py",
        "hparams_search=dpo_optuna",
        *SMOKE,
        "trainer.max_steps=2",
        "callbacks.sample_generations.num_prompts=0",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=2",
        f"hydra.sweep.dir={sweep}",
    )
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "metrics.json").exists())
    assert len(jobs) == 2
    params = [yaml.safe_load((job / "config.yaml").read_text()) for job in jobs]
    for cfg in params:
        assert 0.01 <= cfg["loss"]["beta"] <= 0.5 and 1e-7 <= cfg["optimizer"]["lr"] <= 1e-4
    assert params[0]["loss"]["beta"] != params[1]["loss"]["beta"]  # two sampled points, not one
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    accuracies = [json.loads((job / "metrics.json").read_text())["val/rewards/accuracies"] for job in jobs]
    assert best["best_value"] == pytest.approx(max(accuracies))
    assert set(best["best_params"]) == {"loss.beta", "optimizer.lr"}
    # the summary finds the searched keys in the sweeper's params (Optuna writes no multirun.yaml)
    rows = summary_rows(sweep)
    assert [r["status"] for r in rows] == ["ok", "ok"] and list(rows[0])[2:5] == ["loss.beta", "optimizer.lr", "loss"]
    assert {float(r["loss.beta"]) for r in rows} == {cfg["loss"]["beta"] for cfg in params}
    assert f"best val/rewards/accuracies (highest): job {accuracies.index(max(accuracies))} " in proc.stdout


def test_slurm_launcher_option_composes_to_submitit():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from conftest import CONF

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose(
            config_name="train", overrides=["hydra/launcher=slurm", "paths.output_dir=unused"], return_hydra_config=True
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1 and launcher.max_num_timeout == 3
    assert compose("hparams_search=dpo_optuna").optimized_metric == "val/rewards/accuracies"


def test_frontier_sweep_trains_a_judge_evaluates_every_job_and_plots_reward_against_kl(tmp_path):
    sweep = tmp_path / "frontier"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "SWEEP_DIR": str(sweep),
        "BETAS": "0.1,1.0",
        "JUDGE_ARGS": "data.max_train_pairs=32 trainer.max_epochs=2",
        "EVAL_ARGS": "generation.num_prompts=4 generation.max_new_tokens=8 bootstrap_resamples=200",
    }
    overrides = smoke("trainer.max_steps=3", "optimizer.lr=1e-2", "callbacks.sample_generations.num_prompts=0")
    proc = subprocess.run(
        ["bash", "sweeps/frontier.sh", *overrides], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (sweep / "judge" / "final" / "config.json").is_file()
    with open(sweep / "frontier.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["job"] for r in rows] == ["0", "1", "base"] and [r["beta"] for r in rows] == ["0.1", "1.0", ""]
    assert [r["loss"] for r in rows] == ["dpo", "dpo", "-"]  # the loss option, not its class
    for row in rows[:2]:
        ev = json.loads((sweep / row["job"] / "eval" / "metrics.json").read_text())
        assert ev["judge"]["model"] == str(sweep / "judge" / "final")
        assert float(row["kl_per_sequence"]) == pytest.approx(ev["kl"]["kl_per_sequence"])
        assert float(row["reward"]) == pytest.approx(ev["judge"]["temperature_1"]["reward_dpo"]["value"])
        assert float(row["reward_low"]) <= float(row["reward"]) <= float(row["reward_high"])
    assert float(rows[2]["kl_per_sequence"]) == 0.0
    assert float(rows[2]["reward"]) == pytest.approx(ev["judge"]["temperature_1"]["reward_base"]["value"])
    assert (sweep / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| base |" in (sweep / "frontier.md").read_text()
