"""`evaluate(cfg)`: the DPO-trained policy of a run against its base model, on held-out preference pairs."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data import PreferencePair
from ..data.datamodule import validation_source
from ..models.loading import load_tokenizer
from .generation import generate, sampled_kl
from .judge import RewardJudge, win_rate
from .report import make_plots, write_html, write_markdown
from .scoring import implicit_rewards, preference_accuracy, reward_statistics, score_pairs

log = logging.getLogger(__name__)


def load_trained_policy(final: Path, base: torch.nn.Module) -> torch.nn.Module:
    """`final/` of a run: a full Hugging Face model, or a PEFT adapter applied to (a copy of) the base."""
    if (final / "adapter_config.json").is_file():
        from peft import PeftModel

        return PeftModel.from_pretrained(copy.deepcopy(base), final).merge_and_unload()
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(final, use_safetensors=True, dtype=next(base.parameters()).dtype)


def prompt_text(pair: PreferencePair) -> str:
    if isinstance(pair.prompt, str):
        return pair.prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in pair.prompt)


def describe_validation(data_cfg: DictConfig) -> str:
    """Where the evaluated pairs come from, mirroring PreferenceDataModule's choice of validation split."""
    path = str(data_cfg.get("path"))
    source = validation_source(path, data_cfg.get("val_path"), data_cfg.get("val_split"))
    if source is None:
        return f"{path} (held-out fraction {data_cfg.get('val_fraction')})"
    return source[0] if data_cfg.get("val_path") else f"{source[0]}[{source[1]}]"


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    run_dir = Path(cfg.run_dir)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "final").is_dir():
        raise FileNotFoundError(f"run_dir={run_dir} is not a finished train.py run (needs config.yaml and final/)")
    run_cfg = OmegaConf.load(run_dir / "config.yaml")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))

    base = instantiate(run_cfg.model).model.to(device)  # the run's starting model: its reference
    policy = load_trained_policy(run_dir / "final", base).to(device)
    tokenizer = load_tokenizer(str(run_dir / "final"))
    data_cfg = cfg.data if cfg.get("data") else run_cfg.data
    datamodule = instantiate(data_cfg, tokenizer=tokenizer, report_path=None)  # the run's own report stays as it is
    datamodule.setup()
    pairs, tokens = datamodule.val_pairs[: cfg.max_pairs], datamodule.val_tokens[: cfg.max_pairs]
    loader = DataLoader(tokens, batch_size=cfg.batch_size, collate_fn=datamodule.collator)
    beta = float(run_cfg.loss.get("beta", 0.1))

    bar = lambda desc: (lambda it: tqdm(it, desc=desc, leave=False))  # noqa: E731
    base_scores = score_pairs(base, loader, device, bar("scoring base"))
    dpo_scores = score_pairs(policy, loader, device, bar("scoring DPO"))
    rewards = implicit_rewards(dpo_scores, base_scores, beta)
    metrics: dict[str, Any] = {
        "run_dir": str(run_dir), "data": describe_validation(data_cfg), "pairs": len(tokens), "beta": beta,
        "confidence": cfg.confidence, "base": preference_accuracy(base_scores), "dpo": preference_accuracy(dpo_scores),
        "implicit_reward": reward_statistics(rewards, cfg.bootstrap_resamples, cfg.confidence, cfg.seed),
    }

    g = cfg.generation
    chosen = torch.randperm(len(tokens), generator=torch.Generator().manual_seed(cfg.seed))[: g.num_prompts].sort().values.tolist()
    prompts = [tokens[i].prompt for i in chosen]
    gen = {}
    kl_prompts = [p for p in prompts for _ in range(g.kl_samples_per_prompt)]
    kinds = {"greedy": (prompts, dict(do_sample=False)),
             "sampled": (prompts, dict(do_sample=True, temperature=g.temperature, top_p=g.top_p)),
             "kl": (kl_prompts, dict(do_sample=True, temperature=1.0, top_p=1.0))}  # temperature 1: samples of the model itself
    models = {"base": base, "dpo": policy}
    for name, kind in tqdm([(m, k) for m in models for k in kinds], desc="generating"):
        inputs, sampling = kinds[kind]
        gen[name, kind] = generate(models[name], tokenizer, inputs, max_new_tokens=g.max_new_tokens, seed=cfg.seed,
                                   batch_size=g.batch_size, device=device, **sampling)
    metrics["kl"] = sampled_kl(policy, base, kl_prompts, gen["dpo", "kl"], device)
    for name in ("base", "dpo"):
        metrics[name]["mean_response_tokens_greedy"] = sum(map(len, gen[name, "greedy"].tokens)) / len(prompts)
        metrics[name]["mean_response_tokens_sampled"] = sum(map(len, gen[name, "kl"].tokens)) / len(kl_prompts)
    generations = [{"prompt": prompt_text(pairs[i]), "base_greedy": gen["base", "greedy"].texts[j], "dpo_greedy": gen["dpo", "greedy"].texts[j],
                    "base_sampled": gen["base", "sampled"].texts[j], "dpo_sampled": gen["dpo", "sampled"].texts[j]}
                   for j, i in enumerate(chosen)]

    if cfg.get("judge"):
        judge = RewardJudge(cfg.judge, device=device)
        texts = [g["prompt"] for g in generations]
        metrics["judge"] = {"model": str(cfg.judge), **win_rate(
            judge.score(texts, [g["dpo_greedy"] for g in generations]), judge.score(texts, [g["base_greedy"] for g in generations]),
            cfg.judge_tie_tolerance, cfg.bootstrap_resamples, cfg.confidence, cfg.seed)}
    else:
        metrics["judge"] = None

    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    with open(out / "generations.jsonl", "w") as f:
        f.writelines(json.dumps(g, ensure_ascii=False) + "\n" for g in generations)
    torch.save({k: v.cpu() for k, v in rewards.items()}, out / "rewards.pt")
    make_plots(out, rewards, metrics, beta)
    write_markdown(out / "report.md", metrics, generations)
    write_html(out / "report.html", metrics, generations, out)
    if cfg.get("report_to") == "wandb":
        log_to_wandb(cfg, out, metrics, generations)
    print(headline(metrics, out))
    return metrics


def headline(metrics: dict[str, Any], out: Path) -> str:
    b, d = metrics["base"], metrics["dpo"]
    return (f"Report: {out / 'report.html'} (and report.md)\n"
            f"Held-out preference accuracy ({metrics['pairs']} pairs): base {b['preference_accuracy']:.3f} -> DPO "
            f"{d['preference_accuracy']:.3f} (per-token: {b['preference_accuracy_normalized']:.3f} -> "
            f"{d['preference_accuracy_normalized']:.3f}); implicit-reward accuracy "
            f"{metrics['implicit_reward']['accuracy']['value']:.3f}, KL per token {metrics['kl']['kl_per_token']:.4f}")


def log_to_wandb(cfg: DictConfig, out: Path, metrics: dict[str, Any], generations: list[dict[str, Any]]) -> None:
    import wandb

    from ..loggers import wandb_configured

    run = wandb.init(project=cfg.wandb_project, dir=str(out), job_type="eval",
                     mode="online" if wandb_configured() else "offline", config={"run_dir": metrics["run_dir"]})
    flat = {f"test/{m}/{k}": v for m in ("base", "dpo") for k, v in metrics[m].items()}
    flat.update({f"test/implicit_reward/{k}": v["value"] for k, v in metrics["implicit_reward"].items() if "value" in v})
    flat.update({f"test/kl/{k}": v for k, v in metrics["kl"].items()})
    run.log(flat)
    columns = list(generations[0]) if generations else []
    run.log({"test/generations": wandb.Table(columns=columns, data=[[g[c] for c in columns] for g in generations]),
             **{f"test/plots/{p.stem}": wandb.Image(str(p)) for p in sorted(out.glob("*.png"))}})
    run.finish()
