"""Installed, not only cloned: the wheel in a fresh virtual environment gives `dpo-train` (and the other commands),
which take the same Hydra overrides and read the packaged conf/, run from a folder outside the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from conftest import ROOT


def test_the_wheel_gives_console_commands_that_train_outside_the_repository(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("dpo_lightning-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True
    ).stdout.strip()
    # the dependencies (torch, lightning, ...) from the test's own environment, behind the fresh one's site-packages
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --ignore-installed: the test environment's own (editable) dpo_lightning is on the dependencies' path too
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", str(wheel)], check=True
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of the checkout on the path
    found = subprocess.run(
        [python, "-c", "import dpo_lightning.cli as c; print(c.__file__); print(c.CONF)"],
        cwd=work, capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr[-3000:]
    where = found.stdout.split()
    assert all(p.startswith(site) for p in where), where  # the installed copy, its own conf/
    assert (Path(where[1]) / "model" / "mistral.yaml").is_file()
    for command in ("dpo-evaluate", "dpo-train-online", "dpo-train-reward"):
        assert (env_dir / "bin" / command).is_file()
    run = subprocess.run(
        [env_dir / "bin" / "dpo-train", "model=tiny", "trainer.max_steps=1", "data.max_train_pairs=8",
         "data.max_val_pairs=4", "hydra.run.dir=run"],
        cwd=work, capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    assert "val/loss" in metrics and (work / "run" / "final" / "config.json").is_file()
    assert (work / "run" / "sft" / "final" / "config.json").is_file()  # the default's SFT stage came first
    assert "Trainer: cpu, precision 32-true" in (work / "run" / "train.log").read_text()
