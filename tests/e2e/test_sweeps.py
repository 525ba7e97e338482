"""Hydra's own sweeper and launcher plugins: a real 2-trial Optuna search, and the SLURM launcher option."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import SMOKE, compose, run_script


def test_optuna_search_runs_trials_and_reports_the_best(tmp_path):
    sweep = tmp_path / "optuna"
    # (no optimizer.lr= here: a command-line value of a searched key fixes it for every trial)
    tiny = [o for o in SMOKE if not o.startswith("optimizer.lr=")]
    run_script(
        "train.py",
        "hparams_search=dpo_optuna",
        *tiny,
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
