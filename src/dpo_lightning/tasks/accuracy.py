"""The evaluation's exact-match accuracy on held-out problems (`accuracy:` in eval.yaml), where the held-out data has
reference answers (data=arithmetic, gsm8k, problems): every problem answered by base and the trained model, greedy
and K times sampled, then judged right or wrong (evaluation/accuracy.py). The answers go to `accuracy.jsonl`, one
row a problem; `accuracy.base_from` reads base's from an earlier evaluation's file instead of generating them again
(the online loop's rounds share one base)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from ..core.generation import generate
from ..core.records import atomic_lines, read_lines
from ..evaluation.accuracy import compare_accuracy, judge_answers
from ..judges.functions import as_function

log = logging.getLogger(__name__)
ACCURACY = "accuracy.jsonl"


def problem_accuracy(
    cfg: DictConfig, held_out: Any, models: dict[str, torch.nn.Module], tokenizer: Any, device: torch.device, out: Path
) -> dict[str, Any] | None:
    """Greedy, pass@K and majority@K accuracy of each model on the held-out problems, with the paired test; None
    where the held-out pairs carry no `answer` (not problems) or `accuracy.enabled` is false."""
    settings = cfg.get("accuracy") or {}
    if not settings.get("enabled", True):
        return None
    chosen = [i for i, p in enumerate(held_out.pairs) if p.columns.get("answer") is not None]
    if not chosen:
        return None
    asked = settings.get("num_problems")
    if asked and int(asked) > len(chosen):
        log.warning("accuracy.num_problems=%d but the held-out data has %d problems: accuracy is over %d", int(asked),
                    len(chosen), len(chosen))  # fmt: skip
    chosen = chosen[: asked or len(chosen)]
    prompts = [held_out.pairs[i].prompt for i in chosen]
    answers = [held_out.pairs[i].columns["answer"] for i in chosen]
    ids = [held_out.tokens[i].prompt for i in chosen]
    name, correct = as_function(settings.get("function") or "dpo_lightning.judges.functions.exact_match")
    reused = reused_base(settings.get("base_from"), prompts, settings)
    rows: dict[str, dict[str, Any]] = {}
    for model_name, model in models.items():
        if model_name == "base" and reused is not None:
            rows["base"] = reused
            continue
        rows[model_name] = answer_problems(model, tokenizer, ids, settings, int(cfg.seed), device, model_name)
        log.info("accuracy: %s answered %d problems (greedy and %d samples each)", model_name, len(ids),
                 int(settings.get("samples", 0)))  # fmt: skip
    judged = {m: judge_answers(correct, prompts, r["greedy"], r["samples"], answers) for m, r in rows.items()}
    atomic_lines(
        out / ACCURACY,
        [
            {"prompt": p, "answer": a, "settings": _settings(settings),
             **{f"{m}_{k}": rows[m][k][j] for m in rows for k in ("greedy", "samples")},
             **{f"{m}_right": judged[m].greedy[j] for m in rows}}
            for j, (p, a) in enumerate(zip(prompts, answers))
        ],
    )  # fmt: skip
    result = compare_accuracy(judged["base"], judged["dpo"], float(cfg.confidence))
    result.update(function=name, temperature=float(settings.get("temperature", 1.0)), base_reused=reused is not None)
    return result


def _settings(settings: Any) -> dict[str, Any]:
    """What shapes the answers (the rows of two evaluations are the same answers only if these agree)."""
    return {k: settings.get(k) for k in ("samples", "temperature", "max_new_tokens")}


def answer_problems(
    model: torch.nn.Module,
    tokenizer: Any,
    ids: list[list[int]],
    settings: Any,
    seed: int,
    device: torch.device,
    name: str = "",
) -> dict[str, list]:
    """One model's (`name`'s) greedy answer and K sampled answers to every problem, each set with its progress bar."""
    common = dict(
        max_new_tokens=int(settings.get("max_new_tokens", 96)),
        batch_size=int(settings.get("batch_size", 32)),
        device=device,
        seed=seed,
        by_length=True,
    )
    greedy = generate(model, tokenizer, ids, do_sample=False, progress=f"accuracy: {name} greedy", **common).texts
    k = int(settings.get("samples", 0))
    if not k:
        return {"greedy": greedy, "samples": [[] for _ in ids]}
    repeated = [p for p in ids for _ in range(k)]
    temperature = float(settings.get("temperature", 1.0))
    progress = f"accuracy: {name} {k} samples each"
    sampled = generate(model, tokenizer, repeated, do_sample=True, temperature=temperature, progress=progress, **common)
    texts = sampled.texts
    return {"greedy": greedy, "samples": [texts[i * k : (i + 1) * k] for i in range(len(ids))]}


def reused_base(path: Any, prompts: list[Any], settings: Any) -> dict[str, list] | None:
    """Base's answers from an earlier evaluation's accuracy.jsonl, where it holds the same problems, in order, with
    the same generation settings; else None (generated now)."""
    if not path:
        return None
    rows = read_lines(Path(str(path)))
    same = len(rows) == len(prompts) and all(
        r["prompt"] == p and r["settings"] == _settings(settings) for r, p in zip(rows, prompts)
    )
    if not same:
        log.warning("accuracy.base_from=%s: not the same problems or settings; base answers them again", path)
        return None
    return {"greedy": [r["base_greedy"] for r in rows], "samples": [r["base_samples"] for r in rows]}
