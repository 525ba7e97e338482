"""`judge=auto`: a reward model trained with the evaluated run's model and data config (`conf/reward.yaml`, with
`judge.train.overrides`), once: it is cached under `<cache>/judges/<key>/`, the key a hash of everything that shapes
it (model, data, module, optimizer, scheduler, trainer, peft, seed), like the embedded model's conversion.

What it learns from (`judge.model.data`, `judge_data_path`): pairs disjoint from the run's training pairs where
there are such (the built-in set's `judge` split for a run on `builtin:train`, or a path you give), else the run's
own training pairs, and then the evaluation says, prominently, that the judge grades its own homework. It never
sees the held-out pairs, on which `evaluate.py` reports the judge's own accuracy.

Hand-written pairs teach "this answer is more aligned than that one", never "an answer beats no answer": a judge
trained on them alone ranks a looping or off-topic reply near a good one. `judge.train.negatives` adds, for each
pair, its chosen answer against a derived bad one: `off_topic` (another prompt's chosen answer) and `loop` (the
chosen answer's first sentence, repeated). Both are built deterministically from the pairs themselves.

Problems with answers (`data=arithmetic`, `gsm8k`, `problems`, or an online round's pairs of sampled answers to them)
hold no hand-written pairs for it to learn: `check_judge_data` refuses them in one line, before anything loads, and
names what to set instead (`judge=function`: exact_match against the answers).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .._moved import MOVED, ROOT
from ..config import ConfigError, compose_config
from ..data import PreferenceFormat, ProblemFormat
from ..data.readers import BUILTIN_PREFIX, DataError, is_local, iter_rows
from ..data.sources import validation_source
from ..data.text import as_text, like
from ..models.embedded import default_cache_dir
from .train import train

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


def problem_rows(data: DictConfig, path: str | None = None) -> str | None:
    """What makes `data` (a data option, read from `path` instead of its own when given) problems with answers rather
    than preference pairs, in words: the problems format, or rows carrying an `answer` (an online round's pairs of
    sampled answers, read from a local or built-in file's first row; a Hub set is not downloaded for this); None
    for preference pairs."""
    for source in data.sources.values() if data.get("sources") else [data]:
        where = str(path or source.get("path"))
        form = instantiate(source.format) if source.get("format") else PreferenceFormat()
        if isinstance(form, ProblemFormat):
            kind = type(form).__name__
            return f"{where} holds problems with answers ({kind}: its only pairs are worked answers against slips)"
        if (where.startswith(BUILTIN_PREFIX) or is_local(where)) and "answer" in _first_columns(form, where, source):
            return f"{where}'s rows carry an `answer` (answers to problems, not hand-written pairs)"
    return None


def _first_columns(form: Any, path: str, source: DictConfig) -> dict[str, Any]:
    """The first row of `path` read with `form`: its columns (none where it cannot be read: loading says why)."""
    try:
        where, row = next(iter(iter_rows(path, source.get("split") or "train", source.get("subset"))))
        pair = form.parse(row, where) if not isinstance(row, DataError) else None
    except (StopIteration, OSError, ValueError):
        return {}
    return dict(pair.columns) if pair is not None else {}


def check_judge_data(run_config: DictConfig, data: str = "auto", key: str = "judge", hint: str = "") -> None:
    """Refuse, in one line naming `key` (the judge's option, e.g. judge@eval_judge) and what to set, a reward model
    trained for the run on problems with answers: they hold no hand-written pairs for it to learn."""
    path, _ = judge_data_path(run_config, data)
    reason = problem_rows(run_config.data, None if run_config.data.get("sources") else path)
    if reason is None:
        return
    node = key.split("@")[-1]  # the judge's config key: judge, eval_judge
    own = data and data != "auto" and str(data) == str(run_config.data.get("path"))
    choice = "auto" if not data or data == "auto" else "auto_own" if own else f"auto {node}.model.data={data}"
    raise ConfigError(
        f"{key}={choice} cannot judge this run: {reason}, and a reward model trained for the run learns hand-written "
        f"preference pairs; set {key}=function (exact_match: each answer against the problem's) or {key}=reward "
        f"{node}.model=<a reward model>{hint}"
    )


def judge_config(
    run_config: DictConfig, overrides: dict | DictConfig | None = None, data_path: str | None = None
) -> DictConfig:
    """conf/reward.yaml with the run's model and data (the data scored whole: no packing), read from `data_path`
    instead of the run's training pairs when given, then `overrides` merged (e.g. {trainer: {max_epochs: 2}}).
    The judge starts from the pretrained model, never from `model.init_from`: a run started from an SFT model
    (the main job) would otherwise hand the judge a model tuned on the training pairs' chosen answers."""

    cfg = compose_config("reward", [f"paths.output_dir={os.devnull}"])
    OmegaConf.set_struct(cfg, False)
    start = {"init_from": None} if "init_from" in run_config.model else {}
    model = OmegaConf.create(OmegaConf.to_container(run_config.model))  # (its interpolations resolve in cfg)
    if "recipe" not in model:  # a run of 0.1, before recipes: the default model's, which gives 0.1's settings
        model.recipe = cfg.model.recipe
    cfg.model = OmegaConf.merge(model, {**start, "head": "score"})  # the run's model, a score head on it
    cfg.data = OmegaConf.merge(run_config.data, {"packing": False})
    if data_path and data_path != run_config.data.get("path") and not run_config.data.get("sources"):
        cfg.data.path = data_path
    cfg.seed = run_config.get("seed", cfg.seed)
    return OmegaConf.merge(cfg, overrides or {})


def _first_sentence(text: str) -> str:
    match = re.match(r"\s*(.+?[.!?])(\s|$)", text, flags=re.S)
    return match.group(1) if match else " ".join(text.split()[:8])


NEGATIVES = {
    # another prompt's chosen answer: fluent and aligned, but not an answer to this prompt
    "off_topic": lambda pairs, i: as_text(pairs[(i + len(pairs) // 2) % len(pairs)].chosen),
    # the chosen answer's first sentence four times: a degenerate loop that starts well
    "loop": lambda pairs, i: " ".join([_first_sentence(as_text(pairs[i].chosen))] * 4),
}


def with_negatives(pairs: list, kinds: list[str]) -> list[dict]:
    """The pairs as rows, then for each kind in `kinds` one more row per pair: its chosen answer against that
    derived negative (NEGATIVES), text or chat messages like the pair."""
    unknown = sorted(set(kinds) - set(NEGATIVES))
    if unknown:
        raise ValueError(f"judge.train.negatives: unknown kind(s) {unknown}; known: {sorted(NEGATIVES)}")
    rows = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "kind": "given"} for p in pairs]
    for kind in kinds:
        for i, p in enumerate(pairs):
            negative = NEGATIVES[kind](pairs, i)
            if negative.strip() != as_text(p.chosen).strip():
                rows.append(
                    {"prompt": p.prompt, "chosen": p.chosen, "rejected": like(p.chosen, negative), "kind": kind}
                )
    return rows


def _write_with_negatives(cfg: DictConfig, kinds: list[str], path: Path) -> None:
    """Read the judge's training pairs with their format, write them with their derived negatives to `path` (a
    preference-format .jsonl), and point the judge's data at it."""

    data = cfg.data
    form = instantiate(data.format)
    pairs = form.load(iter_rows(str(data.path), data.get("split") or "train", data.get("subset")))
    pairs = pairs[: data.get("max_train_pairs")]  # the cap applies to the given pairs; each keeps its negatives
    write_rows(path, with_negatives(pairs, kinds))
    held_out = validation_source(str(data.path), data.get("val_path"), data.get("val_split"))
    held = form.load(iter_rows(*held_out, data.get("subset"))) if held_out and form != PreferenceFormat() else []
    if held and all(p.label is None for p in held):  # its held-out pairs too, read with their format (HH's, ...)
        val = path.with_name(path.name.replace(".pairs.jsonl", ".val.jsonl"))
        write_rows(val, [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in held])
        data.val_path, data.val_split = str(val), None
    data.path, data.split, data.subset, data.max_train_pairs = str(path), "train", None, None
    data.format = {"_target_": "dpo_lightning.data.PreferenceFormat"}


def write_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def judge_key(cfg: DictConfig) -> str:
    """The cache key of a judge's config: a hash of everything that shapes it, written as 0.1 wrote it
    (`as_before_layers`), so judges cached before the package's layers still serve."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in sorted(node.items()) if k not in MACHINE_KEYS}
        return [strip(v) for v in node] if isinstance(node, list) else old_target(node)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    shape = as_before_layers({k: resolved.get(k) for k in KEY_SECTIONS})
    shape = strip(shape)
    if resolved.get("negatives"):  # only when given: a judge without them keeps the key it had before they existed
        shape["negatives"] = resolved["negatives"]
    return hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()[:16]


def as_before_layers(shape: dict[str, Any]) -> dict[str, Any]:
    """A judge config's sections as 0.1's keys saw them: no model recipe and no module reference (they came later and
    change nothing it learns), its score head as 0.1's `model_head`."""
    model = {k: v for k, v in (shape.get("model") or {}).items() if k not in ("recipe", "head")}
    module = {k: v for k, v in (shape.get("module") or {}).items() if not (k == "reference" and v is None)}
    head = (shape.get("model") or {}).get("head") == "score"
    legacy = {"_target_": "dpo_lightning.reward.sequence_classifier", "_partial_": True} if head else None
    return {**shape, "model": model, "module": module, "model_head": legacy}


def old_target(value: Any) -> Any:
    """A `_target_` of a moved module as 0.1 named it (dpo_lightning.lightning.reward.X: dpo_lightning.reward.X)."""
    if not isinstance(value, str) or not value.startswith(ROOT + "."):
        return value
    for old, new in MOVED.items():
        if value.startswith(f"{ROOT}.{new}."):
            return f"{ROOT}.{old}.{value[len(ROOT) + len(new) + 2 :]}"
    return value


def cached_judge(
    run_config: DictConfig,
    overrides: dict | DictConfig | None = None,
    cache_dir: str | None = None,
    data_path: str | None = None,
    negatives: list[str] | None = None,
) -> str:
    """The folder of the run's judge (trained on `data_path`, default the run's training pairs, with the derived
    `negatives` added), trained now if it is not cached yet."""

    cfg = judge_config(run_config, overrides, data_path)
    if negatives and cfg.data.get("sources"):
        log.warning("judge.train.negatives left out: the judge learns a mixture (give judge.train.path to add them)")
    elif negatives:  # (absent otherwise, so that a judge without them keeps its cache key)
        cfg.negatives = list(negatives)
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    home = root / "judges" / judge_key(cfg)
    home.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(home) + ".lock"):
        if not (home / "final" / "config.json").is_file():
            log.info("Training the judge (cached afterwards) in %s", home)
            tmp = home.with_name(home.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            cfg.paths.output_dir = str(tmp)
            if cfg.get("negatives"):
                _write_with_negatives(cfg, list(cfg.negatives), home.with_name(home.name + ".pairs.jsonl"))
            cfg.data.report_path = str(tmp / "data_report.json")  # not the evaluated run's own report
            train(cfg)
            shutil.rmtree(home, ignore_errors=True)
            os.replace(tmp, home)
        else:
            log.info("Judge from the cache: %s", home)
    final = home / "final"
    return str(final / "merged" if (final / "merged").is_dir() else final)


@dataclass
class TrainedJudge:
    """What `trained_judge` gives the judge config: the model folder, and what it learned from."""

    folder: str
    data: str  # the pairs it was trained on
    own_pairs: bool  # the run's own training pairs: it grades its own homework


def trained_judge(
    run_config: DictConfig, data: str = "auto", negatives: list[str] | None = None, overrides: Any = None
) -> TrainedJudge:
    """The task `judge=auto` names as its model (`_target_`): the reward model for the run of `run_config`, trained
    on `data` (auto: pairs disjoint from the run's where there are such, `judge_data_path`) with the derived
    `negatives`, once; later calls read it from the cache. Problems with answers are refused (`check_judge_data`)."""
    check_judge_data(run_config, data)
    path, own = judge_data_path(run_config, data)
    cache_dir = (run_config.get("paths") or {}).get("cache_dir")
    folder = cached_judge(run_config, overrides, cache_dir, data_path=path, negatives=list(negatives or []))
    return TrainedJudge(folder, path, own)
