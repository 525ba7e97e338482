"""`evaluate(cfg)`: the DPO-trained policy of a run against its base model, on held-out preference pairs."""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..core.generation import Generated, generate, sampled_kl
from ..core.hub import push_to_hub
from ..core.statistics import MEAN_METHOD, PROPORTION_METHOD
from ..data import PreferencePair, TokenizedPair
from ..data.sources import validation_source
from ..data.text import as_text, prompt_text
from ..evaluation.diversity import diversity
from ..evaluation.model_card import write_model_card
from ..evaluation.records import Generation, write_generations
from ..evaluation.report import log_to_wandb, make_plots, write_html, write_markdown
from ..evaluation.result import EvaluationResult
from ..evaluation.rows import Thresholds
from ..evaluation.scoring import (
    implicit_rewards,
    likelihood_displacement,
    preference_accuracy,
    reward_statistics,
    score_pairs,
)
from ..models.loading import load_tokenizer
from .accuracy import problem_accuracy
from .judges import judge_generations, resolve_judge

log = logging.getLogger(__name__)


def load_trained_policy(final: Path, base: torch.nn.Module) -> torch.nn.Module:
    """`final/` of a run: a full Hugging Face model, or a PEFT adapter applied to (a copy of) the base."""
    if (final / "adapter_config.json").is_file():
        from peft import PeftModel

        return PeftModel.from_pretrained(copy.deepcopy(base), final).merge_and_unload()
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(final, use_safetensors=True, dtype=next(base.parameters()).dtype)


def describe_validation(data_cfg: DictConfig) -> str:
    """Where the evaluated pairs come from, mirroring PreferenceDataModule's choice of validation split."""
    path = str(data_cfg.get("path"))
    source = validation_source(path, data_cfg.get("val_path"), data_cfg.get("val_split"))
    if source is None:
        return f"{path} (held-out fraction {data_cfg.get('val_fraction')})"
    return source[0] if data_cfg.get("val_path") else f"{source[0]}[{source[1]}]"


@dataclass
class Run:
    """The finished train.py run being evaluated, and where its evaluation goes."""

    dir: Path
    config: DictConfig
    out: Path
    device: torch.device

    @property
    def beta(self) -> float:
        """The run's loss's beta (a mixture's or a wrapper's as the loss reports it; no loss: DPO's 0.1)."""
        loss = self.config.get("loss")
        if not loss:
            return 0.1
        return float(loss.beta) if loss.get("beta") is not None else float(instantiate(loss).beta)


@dataclass
class HeldOut:
    """The held-out pairs both models are scored on: raw (for prompts' text), tokenized, and batched."""

    pairs: list[PreferencePair]
    tokens: list[TokenizedPair]
    loader: DataLoader
    description: str


@dataclass
class Samples:
    """One model's generations for the held-out prompts: greedy, sampled (as shown in the report), and at
    temperature 1 (`for_kl`, from `kl_prompts`: samples of the model itself, for the KL and the response lengths)."""

    greedy: Generated
    sampled: Generated
    for_kl: Generated
    kl_prompts: list[list[int]]


def evaluate(cfg: DictConfig) -> EvaluationResult:
    """Load the run's base and DPO models, score both on the held-out pairs, generate from held-out prompts, measure
    the answers' diversity, judge them (with `judge=`), and write metrics.json, generations.jsonl, the plots and
    the reports. Returns the one result object every output is rendered from."""
    run = open_run(cfg)
    judge_spec = resolve_judge(cfg.get("judge"), run.config)  # judge=auto trains (or reads its cache) first
    base, policy, tokenizer = load_models(run, cfg.get("base_model"))
    held_out = held_out_pairs(cfg, run, tokenizer)
    result, rewards = compare_on_pairs(cfg, run, held_out, base, policy)
    prompts = sample_prompts(cfg, held_out)
    samples = {
        name: generate_samples(cfg, model, tokenizer, [held_out.tokens[i].prompt for i in prompts], run.device, name)
        for name, model in (("base", base), ("dpo", policy))
    }
    result.kl = sampled_kl(policy, base, samples["dpo"].kl_prompts, samples["dpo"].for_kl, run.device)
    for name, s in samples.items():
        getattr(result, name)["mean_response_tokens_greedy"] = mean_length(s.greedy)
        getattr(result, name)["mean_response_tokens_sampled"] = mean_length(s.for_kl)
    generations = [
        {
            "prompt": prompt_text(held_out.pairs[i].prompt),
            **({"prompt_turns": held_out.pairs[i].prompt} if not isinstance(held_out.pairs[i].prompt, str) else {}),
            **{
                f"{name}_{kind}": getattr(s, kind).texts[j]
                for kind in ("greedy", "sampled")
                for name, s in samples.items()
            },
            "reference": as_text(held_out.pairs[i].chosen),
        }
        for j, i in enumerate(prompts)
    ]
    answers = {"base": "base_greedy", "dpo": "dpo_greedy", "reference": "reference"}
    result.diversity = {
        name: diversity(
            [g[key] for g in generations], resamples=cfg.bootstrap_resamples, confidence=cfg.confidence, seed=cfg.seed
        ).as_dict()
        for name, key in answers.items()
    }
    models = {"base": base, "dpo": policy}
    result.accuracy = problem_accuracy(cfg, held_out, models, tokenizer, run.device, run.out)
    del base, policy, models  # the judge may be large: the policies are done
    started = time.perf_counter()
    if judge_spec is not None:
        log.info("judging the answers to %d prompts (DPO against base and the references)...", len(prompts))
    result.judge = judge_generations(cfg, judge_spec, held_out, prompts, generations, samples, run.device)
    if result.judge is not None:
        log.info("judged in %.0f s", time.perf_counter() - started)
    write_outputs(cfg, run, result, rewards, generations)
    update_model_card(run, result.to_dict())
    print(result.headline(str(run.out / "report.html")))
    return result


def update_model_card(run: Run, metrics: dict[str, Any]) -> None:
    """The run's final/README.md gains the evaluation; a run pushed to the Hub gets its card there updated too."""
    write_model_card(run.dir, metrics)
    repo_id = (run.config.get("hub") or {}).get("repo_id")
    if repo_id:
        push_to_hub(run.dir, repo_id, revision=run.config.hub.get("revision"), only_card=True)


def open_run(cfg: DictConfig) -> Run:
    run_dir = Path(cfg.run_dir)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "final").is_dir():
        raise FileNotFoundError(f"run_dir={run_dir} is not a finished train.py run (needs config.yaml and final/)")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    return Run(run_dir, OmegaConf.load(run_dir / "config.yaml"), out, device)


def load_models(run: Run, base_model: DictConfig | str | None = None) -> tuple[torch.nn.Module, torch.nn.Module, Any]:
    """The run's starting model (its reference: "base"; or `base_model`: a model config, e.g. the online loop's
    initial policy for a later round, or "pretrained": the run's model without `model.init_from`, the model a
    two-stage run such as SFT then DPO began from), its final policy ("dpo"), and the tokenizer."""
    start = instantiate(run.config.model).model.to(run.device)
    policy = load_trained_policy(run.dir / "final", start).to(run.device)  # a LoRA adapter goes on the run's start
    if base_model == "pretrained":
        base_model = OmegaConf.merge(run.config.model, {"init_from": None})
        if not run.config.model.get("init_from"):
            base_model = None  # the run started from the pretrained model: it is its own start
    elif isinstance(base_model, str):
        raise ValueError(f"base_model={base_model!r}: give null, pretrained, or a model config")
    base = start if base_model is None else instantiate(base_model).model.to(run.device)
    return base, policy, load_tokenizer(str(run.dir / "final"))


def held_out_pairs(cfg: DictConfig, run: Run, tokenizer: Any) -> HeldOut:
    """The held-out preference pairs. A KTO run's unpaired rows split from pairs are evaluated on those pairs; rows
    that were never pairs keep their desirable ones (each completion against another prompt's: the pair metrics then
    measure whether a model ties answers to their prompts, not a preference)."""
    data_cfg = cfg.data if cfg.get("data") else run.config.data
    unpaired_from = data_cfg.get("format") or {}
    if str(unpaired_from.get("_target_", "")).endswith("UnpairedFromPairs"):
        data_cfg = OmegaConf.merge(data_cfg, {"format": None})
        data_cfg.format = unpaired_from.pairs
    datamodule = instantiate(data_cfg, tokenizer=tokenizer, report_path=None)  # the run's own report stays as it is
    datamodule.setup()
    pairs, tokens = datamodule.val_pairs, datamodule.val_tokens
    if datamodule.report.get("val", {}).get("labels"):
        log.warning("the held-out rows are unpaired (KTO): evaluating on the desirable ones, against other prompts")
        kept = [i for i, t in enumerate(tokens) if t.label]
        pairs, tokens = [pairs[i] for i in kept], [tokens[i] for i in kept]
    pairs, tokens = pairs[: cfg.max_pairs], tokens[: cfg.max_pairs]
    loader = DataLoader(tokens, batch_size=cfg.batch_size, collate_fn=datamodule.collator)
    return HeldOut(pairs, tokens, loader, describe_validation(data_cfg))


def compare_on_pairs(
    cfg: DictConfig, run: Run, held_out: HeldOut, base: torch.nn.Module, policy: torch.nn.Module
) -> tuple[EvaluationResult, dict[str, torch.Tensor]]:
    """Preference accuracy of each model, the DPO model's implicit reward against the base, and the likelihood
    displacement of the held-out answers, with intervals."""
    bar = lambda desc: lambda it: tqdm(it, desc=desc, leave=False)  # noqa: E731
    base_scores = score_pairs(base, held_out.loader, run.device, bar("scoring base"))
    dpo_scores = score_pairs(policy, held_out.loader, run.device, bar("scoring DPO"))
    rewards = implicit_rewards(dpo_scores, base_scores, run.beta)
    stats = (cfg.bootstrap_resamples, cfg.confidence, cfg.seed)
    result = EvaluationResult(
        run_dir=str(run.dir),
        data=held_out.description,
        pairs=len(held_out.tokens),
        beta=run.beta,
        confidence=cfg.confidence,
        intervals={"proportions": PROPORTION_METHOD, "means": MEAN_METHOD},
        base=preference_accuracy(base_scores, cfg.confidence),
        dpo=preference_accuracy(dpo_scores, cfg.confidence),
        implicit_reward=reward_statistics(rewards, *stats),
        displacement=likelihood_displacement(base_scores, dpo_scores, *stats),
        thresholds=Thresholds(**(cfg.get("warn") or {})),
    )
    return result, rewards


def sample_prompts(cfg: DictConfig, held_out: HeldOut) -> list[int]:
    """Indices of the held-out pairs whose prompts are generated from: a seeded choice, in data order. Fewer held-out
    pairs than `generation.num_prompts`: all of them, and the log says so."""
    asked, held = int(cfg.generation.num_prompts), len(held_out.tokens)
    if asked > held:
        log.warning("generation.num_prompts=%d but the held-out data (%s) has %d pairs: the answers, their "
                    "diversity and the judged win rates are over %d prompts",
                    asked, held_out.description, held, held)  # fmt: skip
    order = torch.randperm(held, generator=torch.Generator().manual_seed(cfg.seed))
    return order[:asked].sort().values.tolist()


def generate_samples(
    cfg: DictConfig, model: torch.nn.Module, tokenizer: Any, prompts: list[list[int]], device: torch.device, name: str
) -> Samples:
    """`name`'s greedy, sampled and temperature-1 answers, each set with its progress bar."""
    g = cfg.generation
    common = dict(max_new_tokens=g.max_new_tokens, seed=cfg.seed, batch_size=g.batch_size, device=device)
    kl_prompts = [p for p in prompts for _ in range(g.kl_samples_per_prompt)]

    def answers(kind: str, asked: list[list[int]], **sampling: Any) -> Generated:
        return generate(model, tokenizer, asked, progress=f"{name} {kind} answers", **common, **sampling)

    return Samples(
        greedy=answers("greedy", prompts, do_sample=False),
        sampled=answers("sampled", prompts, do_sample=True, temperature=g.temperature, top_p=g.top_p),
        for_kl=answers("temperature-1", kl_prompts, do_sample=True, temperature=1.0, top_p=1.0),
        kl_prompts=kl_prompts,
    )


def mean_length(generated: Generated) -> float:
    return sum(map(len, generated.tokens)) / max(1, len(generated.tokens))


def write_outputs(
    cfg: DictConfig,
    run: Run,
    result: EvaluationResult,
    rewards: dict[str, torch.Tensor],
    generations: list[dict[str, str]],
) -> None:
    out, metrics = run.out, result.to_dict()
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_generations(out, [Generation.from_dict(g) for g in generations])
    torch.save({k: v.cpu() for k, v in rewards.items()}, out / "rewards.pt")
    make_plots(out, rewards, metrics, run.beta)
    write_markdown(out / "report.md", result, generations)
    write_html(out / "report.html", result, generations, out)
    if cfg.get("report_to") == "wandb":
        log_to_wandb(cfg, out, result, generations)
