"""The configs of one online round's two runs, built from the online run's own: the round's DPO training (a
train.py run on the round's pairs, from the previous round's policy) and its evaluation (an evaluate.py run)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ...config import compose_config
from ..accuracy import ACCURACY


def previous_policy(out: Path, r: int) -> Path:
    """Round r's starting policy: round r-1's training run (its final/ model)."""
    return out / f"round_{r - 1}" / "train"


def round_train_config(run: DictConfig, out: Path, r: int, rdir: Path) -> DictConfig:
    """The round's train.py config: the run's own, on the round's pairs, from the previous round's policy."""
    cfg = copy.deepcopy(run)
    OmegaConf.set_struct(cfg, False)
    for key in ("online", "judge", "eval_judge"):
        cfg.pop(key, None)
    data = cfg.data
    cfg.data = OmegaConf.create(
        {
            "_target_": "dpo_lightning.data.preference_data",
            "format": {"_target_": "dpo_lightning.data.PreferenceFormat"},
            "path": str(rdir / "pairs.jsonl"),
            "val_path": str(out / "val.jsonl"),
            "chat_template": bool(data.get("chat_template", False)),
            **{k: data[k] for k in ROUND_DATA_KEYS if k in data},
            "report_path": str(rdir / "train" / "data_report.json"),
        }
    )
    cfg.paths.output_dir = str(rdir / "train")
    cfg.resume = (rdir / "train" / "checkpoints").is_dir()
    cfg.hub = {"repo_id": None}
    if r > 0:
        cfg.model.init_from = str(previous_policy(out, r))
        if run.online.reference == "initial":
            cfg.reference_model = copy.deepcopy(run.model)
    return cfg


def round_eval_config(run: DictConfig, rdir: Path, eval_judge: Any) -> DictConfig:
    """The round's evaluate.py config: its train/ run against base (the initial policy, or online.eval.base_model),
    with `online.eval`'s settings, judged by `eval_judge` (resolved once for the whole run)."""

    cfg = compose_config("eval", [f"run_dir={rdir / 'train'}", f"output_dir={rdir / 'eval'}"])
    OmegaConf.set_struct(cfg, False)
    cfg = OmegaConf.merge(cfg, run.online.get("eval") or {})
    cfg.judge = eval_judge
    if cfg.get("base_model") is None:  # every round against the initial policy (or online.eval.base_model)
        cfg.base_model = OmegaConf.to_container(run.model, resolve=True)
    first = rdir.parent / "round_0" / "eval" / ACCURACY
    if rdir.name != "round_0" and first.is_file() and not cfg.accuracy.get("base_from"):
        cfg.accuracy.base_from = str(first)  # the same base on the same problems every round: answered once
    return cfg


ROUND_DATA_KEYS = (
    "max_length",
    "max_prompt_length",
    "truncation_mode",
    "batch_size",
    "eval_batch_size",
    "num_workers",
    "packing",
    "seed",
    "split_seed",
)
