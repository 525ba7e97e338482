"""Real train.py runs on the data options of issue 15: a parquet file through data=preference, and a streamed mixture
of three sources killed mid-run and resumed to the same result as a run that was never stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import datasets
import pytest
import torch

from conftest import ROOT, assert_same_training, check_run_outputs, run_script, smoke

HERE = os.path.dirname(__file__)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("sources")
    rows = [{"prompt": f"Question {i}?", "chosen": f"A careful answer {i}.", "rejected": f"No {i}."} for i in range(60)]
    datasets.Dataset.from_list(rows).to_parquet(str(d / "a.parquet"))

    def turn(i, answer):
        return [{"role": "user", "content": f"Hi {i}"}, {"role": "assistant", "content": answer}]

    chat = [{"chosen": turn(i, "Hello there!"), "rejected": turn(i, "Go away.")} for i in range(40)]
    (d / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chat))
    (d / "v.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:6]))
    return d


def test_a_parquet_file_trains_through_data_preference(files, tmp_path):
    run = tmp_path / "run"
    run_script(
        "train.py",
        *smoke("data=preference", f"data.path={files / 'a.parquet'}", "data.max_val_pairs=null"),
        f"hydra.run.dir={run}",
    )
    metrics = check_run_outputs(run)
    report = json.loads((run / "data_report.json").read_text())
    assert report["train"]["pairs"] == 16 and report["val"]["pairs"] == 3  # 5% of 60 held out, then the cap of 16
    assert metrics["val/rewards/accuracies"] >= 0


def mixture(files, *extra):
    return [
        "train.py",
        *smoke("data=mixture", "data.max_train_pairs=null", "data.max_val_pairs=null"),
        "data.streaming=true",
        "data.shuffle_buffer=16",
        "trainer.max_steps=8",
        "callbacks.sample_generations.num_prompts=0",
        "~data.sources.hh",
        "+data@data.sources.a=preference",
        f"data.sources.a.path={files / 'a.parquet'}",
        f"data.sources.a.val_path={files / 'v.jsonl'}",
        "+data@data.sources.b=preference",
        f"data.sources.b.path={files / 'b.jsonl'}",
        f"data.sources.b.val_path={files / 'v.jsonl'}",
        "data.weights={builtin: 0.5, a: 0.3, b: 0.2}",
        *extra,
    ]


def test_a_streamed_mixture_killed_mid_run_resumes_to_the_same_result(files, tmp_path):
    straight, run = tmp_path / "straight", tmp_path / "run"
    run_script(*mixture(files), f"hydra.run.dir={straight}")
    signal = [
        "+callbacks.send_signal._target_=signal_injection.SendSignal",
        "+callbacks.send_signal.at_step=3",
        "+callbacks.send_signal.signal_name=SIGTERM",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")])}

    def train(*args):
        cmd = [sys.executable, *mixture(files, *signal, f"hydra.run.dir={run}", *args)]
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)

    stopped = train()
    assert stopped.returncode == 75, stopped.stderr[-3000:]
    saved = torch.load(run / "checkpoints" / "step4.ckpt", map_location="cpu", weights_only=False)
    position = saved["PreferenceDataModule"]["train_position"]
    assert position["draws"] == 4 * 4  # 4 steps of 4 pairs, the mixture's draw count
    assert len(position["sources"]) == 3
    resumed = train("resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training(straight, run)
    report = json.loads((straight / "data_report.json").read_text())
    assert set(report["sources"]) == {"builtin", "a", "b"} and report["sources"]["a"]["weight"] == 0.3
    assert report["val"]["pairs"] == 50 + 6 + 6
    # validation per source and pooled: the pooled mean is the pair-weighted mean of the sources'
    metrics = json.loads((straight / "metrics.json").read_text())
    for name in ("loss", "rewards/margins", "rewards/accuracies", "preference/accuracy_per_token"):
        per_source = [metrics[f"val/{source}/{name}"] for source in ("builtin", "a", "b")]
        pooled = (50 * per_source[0] + 6 * per_source[1] + 6 * per_source[2]) / 62
        assert metrics[f"val/{name}"] == pytest.approx(pooled, rel=1e-5, abs=1e-6), name
