"""`judge=auto`: a reward model trained with the evaluated run's model and data config (`conf/reward.yaml`, with
`judge.train.overrides`), once: it is cached under `<cache>/judges/<key>/`, the key a hash of everything that shapes
it (model, data, module, optimizer, scheduler, trainer, peft, seed), like the embedded model's conversion.

What it learns from (`judge.train.path`, `judge_data_path`): pairs disjoint from the run's training pairs where
there are such (the built-in set's `judge` split for a run on `builtin:train`, or a path you give), else the run's
own training pairs, and then the evaluation says, prominently, that the judge grades its own homework. It never
sees the held-out pairs, on which `evaluate.py` reports the judge's own accuracy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

KEY_SECTIONS = ("model", "model_head", "data", "module", "optimizer", "scheduler", "trainer", "peft", "seed")
MACHINE_KEYS = ("cache_dir", "report_path")  # where things are written on this machine: not what the judge is


# A training set and the disjoint set of pairs its judge learns from (judge.train.path=auto).
DISJOINT_JUDGE_DATA = {"builtin:train": "builtin:judge"}


def judge_data_path(run_config: DictConfig, path: str | None = "auto") -> tuple[str, bool]:
    """(the judge's training pairs, whether they are the run's own): `path` if given, else the data disjoint from
    the run's training pairs (DISJOINT_JUDGE_DATA), else the run's own training pairs."""
    data = run_config.data
    own = data.get("path")
    if path and path != "auto":
        if data.get("sources"):
            raise ValueError("judge.train.path replaces data.path: give it for a single-source data option")
        return str(path), str(path) == str(own)
    if own in DISJOINT_JUDGE_DATA and not data.get("sources"):
        return DISJOINT_JUDGE_DATA[own], False
    return str(own if own is not None else "the run's mixture"), True


def judge_config(
    run_config: DictConfig, overrides: dict | DictConfig | None = None, data_path: str | None = None
) -> DictConfig:
    """conf/reward.yaml with the run's model and data (the data scored whole: no packing), read from `data_path`
    instead of the run's training pairs when given, then `overrides` merged (e.g. {trainer: {max_epochs: 2}})."""
    from ..config import compose_config

    cfg = compose_config("reward", [f"paths.output_dir={os.devnull}"])
    OmegaConf.set_struct(cfg, False)
    cfg.model = run_config.model
    cfg.data = OmegaConf.merge(run_config.data, {"packing": False})
    if data_path and data_path != run_config.data.get("path") and not run_config.data.get("sources"):
        cfg.data.path = data_path
    cfg.seed = run_config.get("seed", cfg.seed)
    return OmegaConf.merge(cfg, overrides or {})


def judge_key(cfg: DictConfig) -> str:
    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in sorted(node.items()) if k not in MACHINE_KEYS}
        return [strip(v) for v in node] if isinstance(node, list) else node

    resolved = OmegaConf.to_container(cfg, resolve=True)
    shape = strip({k: resolved.get(k) for k in KEY_SECTIONS})
    return hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cached_judge(
    run_config: DictConfig,
    overrides: dict | DictConfig | None = None,
    cache_dir: str | None = None,
    data_path: str | None = None,
) -> str:
    """The folder of the run's judge (trained on `data_path`, default the run's training pairs), trained now if it
    is not cached yet."""
    from ..models.embedded import default_cache_dir
    from ..training import train

    cfg = judge_config(run_config, overrides, data_path)
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    home = root / "judges" / judge_key(cfg)
    home.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(home) + ".lock"):
        if not (home / "final" / "config.json").is_file():
            log.info("Training the judge (cached afterwards) in %s", home)
            tmp = home.with_name(home.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            cfg.paths.output_dir = str(tmp)
            cfg.data.report_path = str(tmp / "data_report.json")  # not the evaluated run's own report
            train(cfg)
            shutil.rmtree(home, ignore_errors=True)
            os.replace(tmp, home)
        else:
            log.info("Judge from the cache: %s", home)
    final = home / "final"
    return str(final / "merged" if (final / "merged").is_dir() else final)
