"""The judged part of an evaluation: which judge (`judge=` a conf/judge option), and its verdicts on the answers.

The judge compares DPO's answers with base's (greedy, sampled, and the temperature-1 samples the KL is measured
on), both models' greedy answers with the held-out reference (chosen) answers, and the chosen against the rejected
answer of every held-out pair (its own accuracy: how far to trust it). `judge=auto` names a task as its model: a
reward model trained once and cached (`judge_training.py`), on data disjoint from the run's training pairs where
there is such data; otherwise the result says that the judge was self-trained.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from ..data.text import as_text
from ..evaluation.head_to_head import length_controlled
from ..evaluation.verdicts import judge_accuracy, win_rate
from ..judges.base import compare
from .judge_training import check_judge_data, trained_judge

log = logging.getLogger(__name__)

TRAINED_JUDGE = f"{trained_judge.__module__}.trained_judge"  # judge=auto's model: the task that trains it


@dataclass
class JudgeSpec:
    """The judge's config (its model resolved) and what it was trained on, when evaluate.py trained it."""

    config: DictConfig
    trained_on: str | None = None  # judge=auto: the data its reward model learned from
    self_trained: bool = False  # judge=auto on the run's own training pairs


def resolve_judge(judge: DictConfig | None, run_config: DictConfig, key: str = "judge") -> JudgeSpec | None:
    """The judge config (`judge=` an option) ready to build for the run of `run_config`: where its `model` names a
    task (`_target_`, judge=auto's training), the task runs (or reads its cache) and its folder is put in. A judge
    that cannot serve the run is refused first (`check_judge`), naming `key`."""
    if not judge:
        return None
    judge_cfg = judge_config_of(judge)
    refuse_unfit(judge_cfg, run_config, key)
    model = judge_cfg.get("model")
    if isinstance(model, DictConfig) and "_target_" in model:  # called directly: the run's config stays its own
        task = OmegaConf.to_container(model)
        trained = get_method(task.pop("_target_"))(run_config=run_config, **task)
        judge_cfg.model = trained.folder
        return JudgeSpec(judge_cfg, trained_on=trained.data, self_trained=trained.own_pairs)
    trained_on = reward_run_data(model)
    own = run_config.data.get("path")
    return JudgeSpec(judge_cfg, trained_on, self_trained=trained_on is not None and trained_on == str(own))


def check_judge(judge: DictConfig | None, run_config: DictConfig, key: str = "judge", hint: str = "") -> None:
    """Refuse, in one line naming `key` (judge, judge@eval_judge) and what to set, a judge that cannot serve the run
    of `run_config`: judge=auto (a reward model trained for the run) on problems with answers. Reads no weights: the
    entry points call it before any model loads (evaluate.py through `resolve_judge`, the online loop for both of
    its judges)."""
    if judge:
        refuse_unfit(judge_config_of(judge), run_config, key, hint)


def refuse_unfit(judge_cfg: DictConfig, run_config: DictConfig, key: str, hint: str = "") -> None:
    model = judge_cfg.get("model")
    if isinstance(model, DictConfig) and model.get("_target_") == TRAINED_JUDGE:
        check_judge_data(run_config, model.get("data") or "auto", key, hint)


def judge_config_of(judge: DictConfig) -> DictConfig:
    """The judge's config resolved, a 0.1 `judge.train` turned into judge=auto's task."""
    judge_cfg = OmegaConf.create(OmegaConf.to_container(judge, resolve=True))
    legacy = judge_cfg.pop("train", None)
    if legacy:  # 0.1's judge=auto kept its training under `train:` (path, negatives, overrides)
        log.warning("judge.train is deprecated: judge=auto's training is now judge.model (data, negatives, overrides)")
        judge_cfg.model = {"_target_": TRAINED_JUDGE, "data": legacy.get("path", "auto"),
                           "negatives": legacy.get("negatives"), "overrides": legacy.get("overrides")}  # fmt: skip
    return judge_cfg


def reward_run_data(model: str | None) -> str | None:
    """The training data of a judge that is a train_reward.py run's export (`<run>/final` or `<run>/final/merged`),
    read from that run's config.yaml; None for any other judge (a Hub model, a folder of unknown origin)."""
    if not model:
        return None
    folder = Path(str(model)).expanduser()
    for run_dir in (folder.parent, folder.parent.parent):
        config = run_dir / "config.yaml"
        if folder.is_dir() and config.is_file():
            data = OmegaConf.load(config).get("data") or {}
            return str(data.get("path")) if data.get("path") is not None else None
    return None


def judge_generations(
    cfg: DictConfig,
    spec: JudgeSpec | None,
    held_out: Any,
    prompts: list[int],
    generations: list[dict[str, Any]],
    samples: dict[str, Any],
    device: torch.device,
) -> dict[str, Any] | None:
    """Win/tie/loss of DPO against base (greedy, sampled, temperature-1), of both against the reference answers, and
    the judge's accuracy on the held-out pairs (None without a judge). Scores go into `generations`."""
    if spec is None:
        return None
    judge = instantiate(spec.config)(device=device, batch_size=cfg.batch_size)
    asked = [held_out.pairs[i].prompt for i in prompts]
    columns = shared_columns([held_out.pairs[i] for i in prompts])  # e.g. problems' answers, for reward functions
    stats = dict(resamples=cfg.bootstrap_resamples, confidence=cfg.confidence, seed=cfg.seed)
    result: dict[str, Any] = {
        "model": judge.name,
        "kind": judge.kind,
        "trained_on": spec.trained_on,
        "self_trained": spec.self_trained,
    }
    for kind in ("greedy", "sampled"):
        dpo, base = [g[f"dpo_{kind}"] for g in generations], [g[f"base_{kind}"] for g in generations]
        comparison = compare(judge, asked, dpo, base, columns)
        result[kind] = win_rate(comparison, **stats)
        result[kind]["length_controlled"] = length_controlled(dpo, base, comparison.outcomes.tolist(), **stats)
        if comparison.first_scores is not None:
            for g, d, b in zip(generations, comparison.first_scores.tolist(), comparison.second_scores.tolist()):
                g[f"judge_dpo_{kind}"], g[f"judge_base_{kind}"] = d, b
        for g, o in zip(generations, comparison.outcomes.tolist()):
            g[f"verdict_dpo_over_base_{kind}"] = o
    times = cfg.generation.kl_samples_per_prompt
    kl_asked = [prompt for prompt in asked for _ in range(times)]
    kl_columns = {k: [v for v in values for _ in range(times)] for k, values in columns.items()}
    kl_answers = (samples["dpo"].for_kl.texts, samples["base"].for_kl.texts)
    result["temperature_1"] = win_rate(compare(judge, kl_asked, *kl_answers, kl_columns), **stats)
    reference = [g["reference"] for g in generations]
    result["reference"] = {}
    for name in ("dpo", "base"):
        comparison = compare(judge, asked, [g[f"{name}_greedy"] for g in generations], reference, columns)
        result["reference"][name] = win_rate(comparison, **stats, names=(name, "reference"))
        for g, o in zip(generations, comparison.outcomes.tolist()):
            g[f"verdict_{name}_over_reference"] = o
    pairs = held_out.pairs
    result["accuracy_on_pairs"] = judge_accuracy(
        judge,
        [p.prompt for p in pairs],
        [as_text(p.chosen) for p in pairs],
        [as_text(p.rejected) for p in pairs],
        cfg.confidence,
        shared_columns(pairs),
    )
    return result


def shared_columns(pairs: list[Any]) -> dict[str, list[Any]]:
    """The data columns every one of `pairs` has (a problem's `answer`), one list entry per pair."""
    names = set.intersection(*(set(p.columns) for p in pairs)) if pairs else set()
    return {name: [p.columns[name] for p in pairs] for name in sorted(names)}
