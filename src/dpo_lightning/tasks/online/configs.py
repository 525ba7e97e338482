"""The configs of one online round's two runs, built from the online run's own (never changed): the round's DPO
training (a train.py config of the run's train.yaml keys, on the round's pairs, from the previous round's policy) and
its evaluation (conf/eval.yaml composed, with `online.eval`'s settings)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ...config import compose_config
from ..accuracy import ACCURACY


def previous_policy(out: Path, r: int) -> Path:
    """Round r's starting policy: round r-1's training run (its final/ model)."""
    return out / f"round_{r - 1}" / "train"


def round_train_config(run: DictConfig, out: Path, r: int, rdir: Path) -> DictConfig:
    """The round's train.py config: the run's own train.yaml keys (its model, loss, module, trainer, ...; not the
    loop's), on the round's pairs, in round_<r>/train, from the previous round's policy; the run's config itself is
    left as it is."""
    own = {key: run[key] for key in train_keys() if key in run}
    data = {
        "_target_": "dpo_lightning.data.preference_data",
        "format": {"_target_": "dpo_lightning.data.PreferenceFormat"},
        "path": str(rdir / "pairs.jsonl"),
        "val_path": str(out / "val.jsonl"),
        "chat_template": run.data.get("chat_template", False),  # true, false or auto: decided as the run's was
        **{k: run.data[k] for k in ROUND_DATA_KEYS if k in run.data},
        "report_path": str(rdir / "train" / "data_report.json"),
    }
    initial = OmegaConf.to_container(run.model)
    starts = {"model": {"init_from": str(previous_policy(out, r))}} if r > 0 else {}
    if r > 0 and run.online.reference == "initial":  # the initial policy, loaded as the module's reference
        starts["module"] = {"reference": initial}
    cfg = OmegaConf.merge(
        own,
        {
            "paths": {"output_dir": str(rdir / "train")},
            "resume": (rdir / "train" / "checkpoints").is_dir(),
            "hub": {"repo_id": None},
            # the next round starts from this one's final/: with LoRA, the merged copy
            "callbacks": {"export_final": {"merge_adapter": True}}
            if (run.get("callbacks") or {}).get("export_final")
            else {},
        },
        starts,
    )
    OmegaConf.update(cfg, "data", data, merge=False)  # the round's pairs replace the run's data option whole
    return cfg


@cache
def train_keys() -> tuple[str, ...]:
    """The keys of a train.py config (conf/train.yaml composed): what a round's training takes from the run."""
    return tuple(compose_config("train", ["paths.output_dir=unused"]).keys())


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
