"""`judge=auto`: a reward model trained on the evaluated run's own data and model (`conf/reward.yaml`, with
`judge_overrides`), once: it is cached under `<cache>/judges/<key>/`, the key a hash of everything that shapes it
(model, data, module, optimizer, scheduler, trainer, peft, seed), like the embedded model's conversion.

The judge learns from the run's training pairs and never sees its held-out ones, on which `evaluate.py` then
reports the judge's own accuracy.
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


def judge_config(run_config: DictConfig, overrides: dict | DictConfig | None = None) -> DictConfig:
    """conf/reward.yaml with the run's model and data (the data scored whole: no packing), then `overrides` merged
    (e.g. {trainer: {max_epochs: 2}})."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    conf = str(Path(__file__).resolve().parents[3] / "conf")
    with_run = [f"paths.output_dir={os.devnull}"]
    if GlobalHydra.instance().is_initialized():  # inside evaluate.py's @hydra.main
        cfg = compose("reward", overrides=with_run)
    else:
        with initialize_config_dir(config_dir=conf, version_base="1.3"):
            cfg = compose("reward", overrides=with_run)
    OmegaConf.set_struct(cfg, False)
    cfg.model = run_config.model
    cfg.data = OmegaConf.merge(run_config.data, {"packing": False})
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
    run_config: DictConfig, overrides: dict | DictConfig | None = None, cache_dir: str | None = None
) -> str:
    """The folder of the run's judge, trained now if it is not cached yet."""
    from ..models.embedded import default_cache_dir
    from ..training import train

    cfg = judge_config(run_config, overrides)
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    home = root / "judges" / judge_key(cfg)
    home.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(home) + ".lock"):
        if not (home / "final" / "config.json").is_file():
            log.info("Training the judge (cached afterwards) in %s", home)
            tmp = home.with_name(home.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            cfg.paths.output_dir = str(tmp)
            train(cfg)
            shutil.rmtree(home, ignore_errors=True)
            os.replace(tmp, home)
        else:
            log.info("Judge from the cache: %s", home)
    final = home / "final"
    return str(final / "merged" if (final / "merged").is_dir() else final)
