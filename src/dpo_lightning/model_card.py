"""The model card of every export: `final/README.md` in Hugging Face model-card form, and the optional Hub push.

The card is rendered from what the run left in its directory (config.yaml, metrics.json, data_report.json and,
once `evaluate.py` has run, eval/metrics.json), so train.py and evaluate.py write the same card and evaluate.py
only adds its section. `push_to_hub` uploads `final/` with the card (`hub.repo_id`, off by default); the token
comes from `hub.token`, HF_TOKEN or the stored login, and is never printed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml

from .data.readers import BUILTIN_PREFIX
from .redaction import redact_text

log = logging.getLogger(__name__)

# Embedded models -> the Hub id of the model they are a copy of (the card's base_model).
EMBEDDED_ORIGINS = {"embedded:smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
HUB_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./")


def _read(path: Path) -> Any:
    if not path.is_file():
        return None
    return yaml.safe_load(path.read_text()) if path.suffix == ".yaml" else json.loads(path.read_text())


def _is_hub_id(name: Any) -> bool:
    text = str(name or "")
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and set(text) <= HUB_ID_CHARS


def base_model(config: dict[str, Any]) -> str | None:
    model = config.get("model") or {}
    name = model.get("name_or_path")
    name = EMBEDDED_ORIGINS.get(str(name), name)
    return name if _is_hub_id(name) else None


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


def _target_name(node: dict[str, Any] | None) -> str:
    return str((node or {}).get("_target_", "?")).rsplit(".", 1)[-1]


def _settings(node: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (node or {}).items() if not k.startswith("_")) or "-"


def render_card(run_dir: Path, evaluation: dict[str, Any] | None = None) -> str:
    config = _read(run_dir / "config.yaml") or {}
    metrics = _read(run_dir / "metrics.json") or {}
    report = _read(run_dir / "data_report.json") or {}
    evaluation = evaluation if evaluation is not None else _read(run_dir / "eval" / "metrics.json")
    sources = data_sources(config, report)
    base = base_model(config)
    peft = config.get("peft") or None
    reward_model = bool(config.get("model_head"))
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
        **({"datasets": hubs} if (hubs := [s["path"] for s in sources if _is_hub_id(s["path"])]) else {}),
    }
    trainer, data = config.get("trainer") or {}, config.get("data") or {}
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# {run_dir.name}",
        "",
        f"A {'reward model' if reward_model else 'policy'} trained with **{_target_name(loss)}** (dpo_lightning) "
        f"from `{model_name(config)}`" + (f" (base model: [{base}](https://huggingface.co/{base}))." if base else "."),
        "",
        "## Training data",
        "",
        "| source | read from | split | training pairs | validation pairs | weight |",
        "|---|---|---|---:|---:|---:|",
        *(
            f"| {s['name']} | `{s['path']}` | {s['split'] or '-'} | {s['train'] if s['train'] is not None else '-'} "
            f"| {s['val'] if s['val'] is not None else '-'} | {s['weight'] if s['weight'] is not None else '-'} |"
            for s in sources
        ),
        "",
        "## Training",
        "",
        f"- Loss: `{_target_name(loss)}` ({_settings(loss)})",
        f"- Optimizer: `{_target_name(config.get('optimizer'))}` ({_settings(config.get('optimizer'))})",
        f"- Scheduler: `{_target_name(config.get('scheduler'))}` ({_settings(config.get('scheduler'))})",
        f"- Batch: {data.get('batch_size')} pairs x {trainer.get('accumulate_grad_batches', 1)} accumulation x "
        f"{trainer.get('devices', 1)} device(s); max_length {data.get('max_length')}, packing {data.get('packing')}",
        f"- Length: {trainer.get('max_epochs')} epoch(s), max_steps {trainer.get('max_steps')}; precision "
        f"{trainer.get('precision')}; seed {config.get('seed')}",
        f"- Parameters trained: {'LoRA (' + _settings(peft) + ')' if peft else 'all (full fine-tuning)'}",
        "",
        "## Final metrics (validation)",
        "",
        "| metric | value |",
        "|---|---:|",
        *(f"| {k} | {v:.4g} |" for k, v in sorted(metrics.items()) if k.startswith("val/")),
        "",
    ]
    if evaluation:
        lines += evaluation_section(evaluation)
    lines += [
        "## Use",
        "",
        "```python",
        *usage(bool(peft), reward_model),
        "```",
        "",
        "Trained with `python train.py " + " ".join(_read(run_dir / ".hydra" / "overrides.yaml") or []) + "`.",
        "",
    ]
    return redact_text("\n".join(lines))


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


def evaluation_section(ev: dict[str, Any]) -> list[str]:
    base, dpo, reward = ev["base"], ev["dpo"], ev["implicit_reward"]["accuracy"]
    lines = [
        "## Evaluation (evaluate.py)",
        "",
        f"On {ev['pairs']} held-out pairs ({ev['data']}):",
        "",
        "| | base | DPO |",
        "|---|---:|---:|",
        f"| preference accuracy (summed log-prob) | {base['preference_accuracy']:.3f} "
        f"| {dpo['preference_accuracy']:.3f} |",
        f"| preference accuracy (per token) | {base['preference_accuracy_normalized']:.3f} "
        f"| {dpo['preference_accuracy_normalized']:.3f} |",
        "",
        f"- Implicit-reward accuracy: {reward['value']:.3f} [{reward['ci_low']:.3f}, {reward['ci_high']:.3f}]"
        f" ({ev.get('confidence', 0.95):.0%} Wilson interval)",
        f"- KL(DPO || base): {ev['kl']['kl_per_token']:.4f} per response token",
    ]
    judge = ev.get("judge")
    if judge:
        g, acc = judge["greedy"], judge["accuracy_on_pairs"]
        lines += [
            f"- Judged win rate over base ({judge['model']}, greedy, {g['wins']}/{g['ties']}/{g['losses']} W/T/L): "
            f"{g['win_rate']:.3f} [{g['ci_low']:.3f}, {g['ci_high']:.3f}]; the judge's accuracy on the held-out "
            f"pairs: {acc['value']:.3f} [{acc['ci_low']:.3f}, {acc['ci_high']:.3f}]",
        ]
    return [*lines, ""]


def write_model_card(run_dir: str | Path, evaluation: dict[str, Any] | None = None) -> Path:
    run_dir = Path(run_dir)
    card = run_dir / "final" / "README.md"
    card.write_text(render_card(run_dir, evaluation))
    log.info("Model card written to %s", card)
    return card


def push_to_hub(
    run_dir: str | Path,
    repo_id: str,
    private: bool = True,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = "Upload a policy trained with dpo_lightning",
    only_card: bool = False,
) -> str:
    """Upload `final/` (or only its card) to the Hub model repository `repo_id`, creating it if needed."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    final = Path(run_dir) / "final"
    if only_card:
        result = api.upload_file(
            path_or_fileobj=str(final / "README.md"),
            path_in_repo="README.md",
            repo_id=repo_id,
            revision=revision,
            commit_message="Update the model card with the evaluation",
        )
    else:
        result = api.upload_folder(
            folder_path=str(final), repo_id=repo_id, revision=revision, commit_message=commit_message
        )
    log.info("Pushed %s to https://huggingface.co/%s", "the card" if only_card else final, repo_id)
    return str(result)
