"""The multirun summary (dpo_lightning.tasks.sweeps) on job folders laid out as Hydra and train.py leave them:
.hydra/overrides.yaml, .hydra/hydra.yaml (mode, runtime.choices), config.yaml and metrics.json (none: failed)."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
from itertools import combinations
from pathlib import Path

import pytest
import yaml
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import OmegaConf

from dpo_lightning.tasks.sweeps import SweepSpec, SweepSummary, read_jobs, summarize, swept_keys, write_summary
from dpo_lightning.tasks.sweeps.plot import axis, summary_figure

ROOT = Path(__file__).resolve().parents[3]


def make_job(sweep: Path, name: str, overrides: list[str], choices: dict, metrics: dict | None, mode="MULTIRUN"):
    """A job folder as Hydra and train.py write it; `metrics=None`: the job failed before metrics.json."""
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    hydra = {"hydra": {"mode": mode, "runtime": {"choices": choices}, "job": {"num": name}}}
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    beta = next((float(o.split("=")[1]) for o in overrides if o.startswith("loss.beta=")), 0.1)
    config = {"loss": {"_target_": "dpo_lightning.core.losses.dpo.DPOLoss", "beta": beta}}
    (job / "config.yaml").write_text(yaml.safe_dump({**config, "optimized_metric": "val/rewards/accuracies"}))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    return job


def metrics(accuracy: float, margin: float = 0.1, kl: float = 0.01) -> dict:
    return {"val/rewards/accuracies": accuracy, "val/rewards/margins": margin, "val/kl": kl, "val/loss": 0.6}


def multirun_yaml(sweep: Path, task: list[str], **sweeper) -> None:
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": task}, "sweeper": sweeper}}))


@pytest.fixture
def beta_sweep(tmp_path) -> Path:
    """`-m loss.beta=0.01,0.1,0.5 loss=rpo_sft`: job 1 failed; beside the jobs, a single run (an SFT stage)."""
    sweep = tmp_path / "sweep"
    common = ["debug=smoke", "loss=rpo_sft"]
    make_job(sweep, "0", [*common, "loss.beta=0.01"], {"loss": "rpo_sft", "model": "tiny"}, metrics(0.5, kl=0.2))
    make_job(sweep, "1", [*common, "loss.beta=0.1"], {"loss": "rpo_sft", "model": "tiny"}, None)
    make_job(sweep, "2", [*common, "loss.beta=0.5"], {"loss": "rpo_sft", "model": "tiny"}, metrics(0.75, kl=0.05))
    make_job(sweep, "sft", ["stage=sft"], {"loss": "sft"}, metrics(0.9), mode="RUN")
    multirun_yaml(sweep, ["debug=smoke", "loss=rpo_sft", "loss.beta=0.01,0.1,0.5"])
    return sweep


def test_every_job_is_a_row_with_its_loss_option_and_the_failed_one_listed_as_failed(beta_sweep):
    summary = summarize(beta_sweep)
    assert [j.name for j in summary.jobs] == ["0", "1", "2"]  # the single run kept in the folder is not a job
    assert summary.keys == ["loss.beta"]
    assert summary.header[:4] == ["job", "status", "loss.beta", "loss"]
    rows = summary.rows()
    assert [(r["job"], r["status"], r["loss.beta"], r["loss"]) for r in rows] == [
        ("0", "ok", "0.01", "rpo_sft"),
        ("1", "failed", "0.1", "rpo_sft"),
        ("2", "ok", "0.5", "rpo_sft"),
    ]
    assert rows[1]["val/rewards/accuracies"] is None and rows[2]["val/rewards/accuracies"] == 0.75
    assert summary.best().name == "2"  # accuracies: highest
    line = summary.line([beta_sweep / "summary.csv", beta_sweep / "summary.md"])
    assert line.startswith(f"Sweep summary: {beta_sweep}/{{summary.csv,summary.md}}: 3 jobs, 1 failed (job 1")
    assert line.endswith("best val/rewards/accuracies (highest): job 2 (loss.beta=0.5) 0.75")


def test_the_files_are_written_beside_the_jobs(beta_sweep):
    paths = write_summary(summarize(beta_sweep))
    assert [p.name for p in paths] == ["summary.csv", "summary.md", "summary.png"]
    with open(beta_sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"] and rows[1]["val/kl"] == ""
    assert "| 1 | failed | 0.1 | rpo_sft |" in (beta_sweep / "summary.md").read_text()
    assert (beta_sweep / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(beta_sweep.glob(".summary*"))  # written whole through temporary files, none left


def test_swept_keys_come_from_the_multiruns_overrides_its_sweeper_and_the_jobs(tmp_path):
    spec = SweepSpec(
        overrides=["loss=dpo,ipo", "optimizer.lr=1e-5", "+x=range(1,3)", "hydra.launcher.n_jobs=1,2"],
        sweeper_params={"loss.beta": "tag(log, interval(0.01, 0.5))"},
    )
    assert spec.swept() == ["loss", "x", "hydra.launcher.n_jobs", "loss.beta"]
    # an Optuna search leaves no multirun.yaml: the trials' sampled values differ from job to job
    make_job(tmp_path, "0", ["debug=smoke", "optimizer.lr=1e-06", "loss.beta=0.02"], {"loss": "dpo"}, metrics(0.5))
    make_job(tmp_path, "1", ["debug=smoke", "optimizer.lr=3e-05", "loss.beta=0.02"], {"loss": "dpo"}, metrics(0.6))
    jobs = read_jobs(tmp_path)
    assert swept_keys(SweepSpec.read(tmp_path), jobs) == ["optimizer.lr"]
    assert swept_keys(spec, jobs, also="loss.beta") == ["loss.beta", "loss", "x", "optimizer.lr"]  # no hydra.*
    assert [j.value("optimizer.lr") for j in jobs] == [1e-06, 3e-05]
    rows = summarize(tmp_path).rows()
    assert [r["optimizer.lr"] for r in rows] == ["1e-06", "3e-05"]  # as written, never rounded to 0.0000


def test_a_swept_loss_group_is_its_option_name_and_the_table_has_one_loss_column(tmp_path):
    for i, loss in enumerate(["dpo", "ipo"]):
        make_job(tmp_path, str(i), [f"loss={loss}"], {"loss": loss}, metrics(0.5 + i / 10))
    multirun_yaml(tmp_path, ["loss=dpo,ipo"])
    summary = summarize(tmp_path)
    assert summary.header.count("loss") == 1 and [r["loss"] for r in summary.rows()] == ["dpo", "ipo"]


def test_the_best_job_follows_the_direction(beta_sweep):
    multirun_yaml(beta_sweep, ["loss.beta=0.01,0.1,0.5"], direction="minimize")
    assert summarize(beta_sweep).best().name == "0"  # the sweeper's direction
    assert summarize(beta_sweep, direction="maximize").best().name == "2"  # the callback's, over the sweeper's
    for job in ("0", "2"):  # a loss is minimized when nobody says
        cfg = yaml.safe_load((beta_sweep / job / "config.yaml").read_text())
        (beta_sweep / job / "config.yaml").write_text(yaml.safe_dump({**cfg, "optimized_metric": "val/loss"}))
    multirun_yaml(beta_sweep, ["loss.beta=0.01,0.1,0.5"])
    (beta_sweep / "0" / "metrics.json").write_text(json.dumps({**metrics(0.5), "val/loss": 0.4}))
    summary = summarize(beta_sweep)
    assert summary.optimized_metric == "val/loss" and summary.best().name == "0"
    with pytest.raises(ValueError, match="direction: 'up'"):
        SweepSummary(direction="up")


def label_boxes(values: list, key: str = "loss.beta") -> list:
    """The rendered x tick labels' boxes of the summary plot of one finished job per value."""
    import matplotlib.pyplot as plt

    from dpo_lightning.tasks.sweeps import SweepJob

    jobs = [
        SweepJob(str(i), Path(str(i)), {key: v}, {"loss": "dpo"}, {}, metrics(0.5 + i / 100))
        for i, v in enumerate(values)
    ]
    fig = summary_figure(jobs, [key], ["val/rewards/accuracies", "val/kl"])
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in fig.axes[0].get_xticklabels() if t.get_text()]
    plt.close(fig)
    return boxes


@pytest.mark.parametrize(
    "values",
    [
        [0.01, 0.1, 0.5],
        [0.1, 0.11, 0.12, 0.5],  # too close to tell apart on their own scale
        [round(1e-7 * 1.5**i, 12) for i in range(30)],  # many: a learning-rate grid
        ["dpo", "ipo", "hinge", "robust", "sigmoid_norm", "aot_unpaired", "discopop", "bco_pair", "apo_zero"],
    ],
)
def test_the_x_labels_never_overlap(values):
    boxes = label_boxes(values)
    assert len(boxes) >= min(len(values), 15)
    assert not [(a, b) for a, b in combinations(boxes, 2) if a.overlaps(b)]


def test_the_axis_is_log_for_a_decade_even_for_close_values_and_in_order_for_text():
    at, scale = axis([0.01, 0.1, 0.5])
    assert scale == "log scale" and at[0.1] == pytest.approx(-1.0)
    at, scale = axis([0.5, 0.1, 0.11])
    assert scale == "evenly spaced" and [at[v] for v in (0.1, 0.11, 0.5)] == [0.0, 1.0, 2.0]
    assert axis([0.2, 0.4, 0.6]) == ({0.2: 0.2, 0.4: 0.4, 0.6: 0.6}, "")
    assert axis(["ipo", "dpo", "ipo"]) == ({"ipo": 0.0, "dpo": 1.0}, "in sweep order")


def test_the_callback_writes_the_summary_when_the_multirun_ends_and_after_a_failed_job(beta_sweep, caplog):
    callback = SweepSummary()
    multirun = OmegaConf.create(
        {
            "optimized_metric": "val/rewards/accuracies",
            "hydra": {"mode": RunMode.MULTIRUN, "sweep": {"dir": str(beta_sweep)}, "sweeper": {"params": None},
                      "overrides": {"task": ["debug=smoke", "loss.beta=0.01,0.1,0.5"]}},
        }
    )  # fmt: skip
    callback.on_multirun_start(config=multirun)
    with caplog.at_level(logging.INFO, logger="dpo_lightning.tasks.sweeps"):
        callback.on_multirun_end(config=multirun)
    assert "3 jobs, 1 failed (job 1" in caplog.text and "best val/rewards/accuracies (highest): job 2" in caplog.text
    assert (beta_sweep / "summary.png").is_file()

    # a job's config (its own overrides, not the sweep's): the basic sweeper stops after a failed job, without
    # on_multirun_end, so each job's end writes the summary so far, and a failed one says where it is
    for name in ("summary.csv", "summary.md", "summary.png"):
        (beta_sweep / name).unlink()
    job = OmegaConf.create(
        {
            "hydra": {
                "mode": RunMode.MULTIRUN,
                "sweep": {"dir": str(beta_sweep)},
                "overrides": {"task": ["loss.beta=0.1"]},
            }
        }
    )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dpo_lightning.tasks.sweeps"):
        callback.on_job_end(config=job, job_return=JobReturn(status=JobStatus.FAILED))
    assert "1 failed (job 1" in caplog.text and caplog.records[-1].levelname == "WARNING"
    assert "loss.beta" in (beta_sweep / "summary.md").read_text().splitlines()[0]  # from multirun.yaml
    for name in ("summary.csv", "summary.md", "summary.png"):
        (beta_sweep / name).unlink()
    SweepSummary(enabled=False).on_multirun_end(config=multirun)  # turned off: nothing written
    assert not list(beta_sweep.glob("summary*"))
    single = OmegaConf.create({"hydra": {"mode": RunMode.RUN, "sweep": {"dir": str(beta_sweep / "none")}}})
    callback.on_job_end(config=single, job_return=JobReturn(status=JobStatus.COMPLETED))  # a single run: nothing
    assert not (beta_sweep / "none").exists()


def test_an_unreadable_file_is_one_line_naming_it(beta_sweep, caplog):
    (beta_sweep / "2" / ".hydra" / "overrides.yaml").write_text("- loss.beta=[0.1\n")
    summarize_script = load_script()
    with pytest.raises(SystemExit, match=r"2/.hydra/overrides.yaml: an override Hydra cannot parse"):
        summarize_script.main([str(beta_sweep)])
    with pytest.raises(SystemExit, match=r"no such multirun directory"):
        summarize_script.main([str(beta_sweep / "missing")])
    (beta_sweep / "2" / ".hydra" / "overrides.yaml").write_text("- loss.beta=0.5\n")
    (beta_sweep / "0" / "metrics.json").write_text("{truncated")  # listed as failed, the rest summarised
    with caplog.at_level(logging.WARNING):
        paths = summarize_script.main([str(beta_sweep)])
    assert "0/metrics.json: not readable as JSON" in caplog.text
    assert [r["status"] for r in csv.DictReader(open(paths[0]))] == ["failed", "failed", "ok"]


def test_the_script_is_the_packages_summary_with_x_and_out(beta_sweep, capsys):
    paths = load_script().main([str(beta_sweep), "--x", "loss._target_", "--out", str(beta_sweep / "by_target")])
    assert [p.name for p in paths] == ["by_target.csv", "by_target.md", "by_target.png"]
    rows = list(csv.DictReader(open(paths[0])))
    assert rows[0]["loss._target_"] == "dpo_lightning.core.losses.dpo.DPOLoss" and rows[0]["loss.beta"] == "0.01"
    assert capsys.readouterr().out.startswith(f"Sweep summary: {beta_sweep}/{{by_target.csv,")


def load_script():
    spec = importlib.util.spec_from_file_location("summarize", ROOT / "sweeps" / "summarize.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tied_jobs_are_named_with_the_best(tmp_path):
    """The first hour's sweep on 2 validation pairs: every job at 0.5; the line says the metric cannot rank them."""
    for i, beta in enumerate(["0.05", "0.1", "0.5"]):
        make_job(tmp_path, str(i), [f"loss.beta={beta}"], {"loss": "rpo_light"}, metrics(0.5))
    multirun_yaml(tmp_path, ["loss.beta=0.05,0.1,0.5"])
    line = summarize(tmp_path).line([tmp_path / "summary.csv"])
    assert line.endswith("job 0 (loss.beta=0.05) 0.5, tied with job 1, 2: the metric does not tell them apart")
