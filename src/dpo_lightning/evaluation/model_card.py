"""The model card of every export: `final/README.md` in Hugging Face model-card form.

The card is rendered from what the run left in its directory (config.yaml, metrics.json, data_report.json and,
once `evaluate.py` has run, eval/metrics.json), so train.py and evaluate.py write the same card and evaluate.py
only adds its section. The text is a template shipped with the package (`templates/policy_card.md`,
`templates/reward_card.md`: Markdown with `$placeholders`); this module only fills in the values. Pushing the card
to the Hub is `hub.push_to_hub`.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import yaml

from ..core.hub import is_hub_id
from ..core.redaction import redact_text
from ..core.tables import markdown_table
from ..data.readers import BUILTIN_PREFIX
from .records import METRICS, SCHEMA, EvaluationRecord
from .rows import summary_table

log = logging.getLogger(__name__)

# Embedded models -> the Hub id of the model they are a copy of (the card's base_model).
EMBEDDED_ORIGINS = {"embedded:smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def _read(path: Path) -> Any:
    if not path.is_file():
        return None
    return yaml.safe_load(path.read_text()) if path.suffix == ".yaml" else json.loads(path.read_text())


def template(name: str) -> Template:
    return Template((resources.files("dpo_lightning") / "templates" / name).read_text())


def base_model(config: dict[str, Any]) -> str | None:
    model = config.get("model") or {}
    name = model.get("name_or_path")
    name = EMBEDDED_ORIGINS.get(str(name), name)
    return name if is_hub_id(name) and "/" in str(name) else None


def model_name(config: dict[str, Any]) -> str:
    model = config.get("model") or {}
    return str(model.get("init_from") or model.get("name_or_path") or model.get("shape") or _target_name(model))


def data_sources(config: dict[str, Any], report: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per source: name, where it was read, its pairs (a single data option is one source)."""
    data = config.get("data") or {}
    sources = data.get("sources") or {"data": data}
    out = []
    for name, source in sources.items():
        counts = (report.get("sources") or {}).get(name, {})
        single = not data.get("sources")
        out.append(
            {
                "name": name,
                "path": source.get("path"),
                "split": None if str(source.get("path", "")).startswith(BUILTIN_PREFIX) else source.get("split"),
                "train": report.get("train", {}).get("pairs") if single else counts.get("train_pairs"),
                "val": report.get("val", {}).get("pairs") if single else counts.get("val_pairs"),
                "weight": counts.get("weight"),
            }
        )
    return out


def is_reward_model(config: dict[str, Any]) -> bool:
    """A train_reward.py run: a score head on the model (0.1's configs said so with `model_head`)."""
    return (config.get("model") or {}).get("head") == "score" or bool(config.get("model_head"))


def _target_name(node: dict[str, Any] | None) -> str:
    return str((node or {}).get("_target_", "?")).rsplit(".", 1)[-1]


def _settings(node: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (node or {}).items() if not k.startswith("_")) or "-"


def render_card(run_dir: Path, evaluation: dict[str, Any] | None = None) -> str:
    config = _read(run_dir / "config.yaml") or {}
    metrics = _read(run_dir / "metrics.json") or {}
    report = _read(run_dir / "data_report.json") or {}
    if evaluation is not None:  # evaluate.py's own result, as it writes it
        evaluation = EvaluationRecord(evaluation, SCHEMA)
    elif (run_dir / "eval" / METRICS).is_file():
        evaluation = EvaluationRecord.read(run_dir / "eval")
    sources = data_sources(config, report)
    base = base_model(config)
    peft = config.get("peft") or None
    reward_model = is_reward_model(config)
    loss = config.get("loss") or {
        "_target_": "BradleyTerryLoss",
        **{k: v for k, v in (config.get("module") or {}).items() if k == "center_rewards_coefficient"},
    }
    front = {
        "library_name": "peft" if peft else "transformers",
        "pipeline_tag": "text-classification" if reward_model else "text-generation",
        "tags": ["dpo_lightning", "reward-model" if reward_model else "dpo", "preference-optimization"]
        + [_target_name(loss)],
        **({"base_model": base} if base else {}),
        **({"datasets": hubs} if (hubs := [s["path"] for s in sources if is_hub_id(s["path"])]) else {}),
    }
    trainer, data = config.get("trainer") or {}, config.get("data") or {}
    dash = lambda v: "-" if v is None else v  # noqa: E731
    values = {
        "front_matter": yaml.safe_dump(front, sort_keys=False).strip(),
        "title": run_dir.name,
        "loss_name": _target_name(loss),
        "loss_settings": _settings(loss),
        "start_model": model_name(config),
        "base_link": f" (base model: [{base}](https://huggingface.co/{base}))" if base else "",
        "data_rows": "\n".join(
            f"| {s['name']} | `{s['path']}` | {s['split'] or '-'} | {dash(s['train'])} | {dash(s['val'])} "
            f"| {dash(s['weight'])} |"
            for s in sources
        ),
        "optimizer_name": _target_name(config.get("optimizer")),
        "optimizer_settings": _settings(config.get("optimizer")),
        "scheduler_name": _target_name(config.get("scheduler")),
        "scheduler_settings": _settings(config.get("scheduler")),
        "batch": f"{data.get('batch_size')} pairs x {trainer.get('accumulate_grad_batches', 1)} accumulation x "
        f"{trainer.get('devices', 1)} device(s); max_length {data.get('max_length')}, packing {data.get('packing')}",
        "length": f"{trainer.get('max_epochs')} epoch(s), max_steps {trainer.get('max_steps')}; precision "
        f"{trainer.get('precision')}; seed {config.get('seed')}",
        "parameters": f"LoRA ({_settings(peft)})" if peft else "all (full fine-tuning)",
        "metric_rows": "\n".join(f"| {k} | {v:.4g} |" for k, v in sorted(metrics.items()) if k.startswith("val/")),
        "evaluation": "\n".join(evaluation_section(evaluation)) + "\n" if evaluation else "",
        "usage": "\n".join(usage(bool(peft), reward_model)),
        "command": command(run_dir, config),
    }
    card = template("reward_card.md" if reward_model else "policy_card.md").substitute(values)
    return redact_text(card)


def command(run_dir: Path, config: dict[str, Any]) -> str:
    """The command line that trained the run: its entry point (from Hydra's record of the job) and overrides."""
    hydra = _read(run_dir / ".hydra" / "hydra.yaml") or {}
    name = ((hydra.get("hydra") or {}).get("job") or {}).get("name")
    entry = f"{name}.py" if name else ("train_reward.py" if is_reward_model(config) else "train.py")
    return " ".join(["python", entry, *(_read(run_dir / ".hydra" / "overrides.yaml") or [])])


def usage(peft: bool, reward_model: bool) -> list[str]:
    kind = "SequenceClassification" if reward_model else "CausalLM"
    if peft:
        return [
            f"from peft import AutoPeftModelFor{kind}",
            f'model = AutoPeftModelFor{kind}.from_pretrained("<this folder or repo>")',
        ]
    lines = [
        f"from transformers import AutoModelFor{kind}, AutoTokenizer",
        f'model = AutoModelFor{kind}.from_pretrained("<this folder or repo>")',
        'tokenizer = AutoTokenizer.from_pretrained("<this folder or repo>")',
    ]
    if reward_model:
        lines.append("# reward of a (prompt, response): model(**tokenizer(text, return_tensors='pt')).logits[0, 0]")
    return lines


def evaluation_section(ev: EvaluationRecord) -> list[str]:
    """The evaluation's summary rows and warnings (eval/metrics.json, written from `EvaluationResult`)."""
    header, cells = summary_table(ev.summary)
    lines = [
        "## Evaluation (evaluate.py)",
        "",
        f"On {ev.pairs} held-out pairs ({ev.raw['data']}); {ev.raw.get('confidence', 0.95):.0%} intervals.",
        "",
        *markdown_table(header, cells),
        "",
    ]
    warnings = ev.warnings
    lines += ["**Warnings:**", "", *(f"- ⚠ {w}" for w in warnings)] if warnings else ["No evaluation warning raised."]
    return [*lines, ""]


def write_model_card(run_dir: str | Path, evaluation: dict[str, Any] | None = None) -> Path:
    run_dir = Path(run_dir)
    card = run_dir / "final" / "README.md"
    card.write_text(render_card(run_dir, evaluation))
    log.info("Model card written to %s", card)
    return card
