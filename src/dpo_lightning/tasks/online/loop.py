"""`train_online(cfg)`: online (iterative) DPO, in rounds, built from the framework's own pieces.

One round r, in `<run>/round_<r>/`:
1. **sample**: `online.sampling.samples_per_prompt` answers to each of the round's prompts (a seeded choice of the
   training prompts) from the current policy, batched with the KV cache, or by vLLM on a GPU
   (`online.sampling.backend`, online_samplers) -> `samples.jsonl`;
2. **score**: the judge (`judge=`: a reward model, `auto`, or the LLM judge) scores every answer -> `scores.jsonl`;
3. **pairs**: best against worst answer per prompt (`online.pairs.min_gap`; ties give none; with
   `online.pairs.data_chosen` the data's chosen answer is ranked too) -> `pairs.jsonl`, in the format `data=jsonl`
   reads (with the scores), so any round can be replayed offline; the first `online.offline_rounds` rounds skip
   steps 1-3 and write the data's own pairs of their prompts instead (offline data first, then online). A sampled
   round also writes `blind.md`: `online.read_pairs` of its pairs, chosen and rejected shuffled, for a person to
   check the judge's labels (`python -m dpo_lightning.evaluation.blind <round> --score <verdicts>`);
4. **train**: DPO (the configured loss, model, peft, trainer) on those pairs -> `train/` (a train.py run), starting
   from the previous round's policy; the reference is the initial policy or the previous round's
   (`online.reference=initial|previous`);
5. **evaluate**: the full evaluation of `train/` against base (the initial policy, or `online.eval.base_model`) on
   the held-out pairs, judged by `eval_judge` (keep it one the loop does not train on; unset, judge=auto, or on
   problems with answers the loop's own judge: `judging.py`) -> `eval/`, and one row of `rounds.{csv,md,png}`.

Both judges are settled before anything loads (`settle_judges`): one that cannot serve the run (judge=auto on
problems) stops it in one line naming the option and what to set.

Resumable at round and step granularity: every phase's output is written as it goes (sampling and scoring chunk by
chunk, training with its checkpoints) and skipped once complete. SIGTERM, SIGUSR1 or SIGUSR2 stop the run after the
current chunk (or, in training, the current optimizer step, with a checkpoint) with status 75; rerunning the same
command with `resume=true` continues, and gives the same pairs and the same final metrics as an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ...core import seeds
from ...core.records import RoundPair, read_samples, write_pairs
from ...data.text import as_text
from ...evaluation.blind import write_pairs_sheet
from ...evaluation.head_to_head import HEAD_TO_HEAD, head_to_head
from ...models.loading import resolve_name_or_path, run_final_model
from ..evaluate import evaluate
from ..judges import resolve_judge
from ..train import save_config, train
from .configs import previous_policy, round_eval_config, round_train_config
from .judging import EVALUATOR, SCORER, settle_judges
from .pairs import PairRule, Sampling, build_pairs, read_lines, sample_answers, score_answers
from .samplers import HFSampler, VLLMSampler, chosen_backend, save_policy
from .stopper import Stopper
from .table import round_row, write_rounds

log = logging.getLogger(__name__)


def train_online(cfg: DictConfig) -> dict[str, float]:
    """Run every round (or the rounds still missing, with `resume=true`); returns the last round's evaluation."""
    settle_judges(cfg)  # the evaluation's judge where unset; a judge that cannot serve is refused, in one line
    out = Path(cfg.paths.output_dir)
    if (out / "round_0").exists() and not cfg.get("resume"):
        raise FileExistsError(f"{out} already holds rounds: pass resume=true to continue them (or a new directory)")
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out)
    stopper = Stopper()
    try:
        return Loop(cfg, out, stopper).run()
    finally:
        stopper.restore()


def prompt_key(prompt: Any) -> str:
    return json.dumps(prompt, sort_keys=True)


class Loop:
    def __init__(self, cfg: DictConfig, out: Path, stopper: Stopper) -> None:
        self.cfg, self.out, self.stopper = cfg, out, stopper
        online = cfg.online
        self.sampling = Sampling(**OmegaConf.to_container(online.sampling, resolve=True))
        self.rule = PairRule(**online.pairs)
        if online.reference not in ("initial", "previous"):
            raise ValueError(f"online.reference must be initial or previous, got {online.reference!r}")
        self.hooks = [instantiate(h) for h in (online.get("hooks") or {}).values() if h]
        self.device = torch.device("cuda" if torch.cuda.is_available() and cfg.trainer.accelerator != "cpu" else "cpu")

    def run(self) -> dict[str, float]:
        initial = instantiate(self.cfg.model)
        tokenizer = initial.tokenizer
        prompts, prompt_ids = self.prompts(tokenizer)
        judge = self.judges()
        rows: list[dict[str, Any]] = []
        for r in range(self.cfg.online.rounds):
            rows.append(self.round(r, initial, prompts, prompt_ids, judge))
            write_rounds(self.out, rows)
        return rows[-1]

    # -- once per run ------------------------------------------------------------------------------------------
    def prompts(self, tokenizer: Any) -> tuple[list[Any], list[list[int]]]:
        """The training prompts (each once) and their token ids, and the held-out pairs as `val.jsonl` (what every
        round validates on, in the format data=jsonl reads)."""
        data = instantiate(self.cfg.data, tokenizer=tokenizer, report_path=None)
        data.setup()
        prompts, ids, self.data_pairs = [], [], {}
        for pair, tokens in zip(data.train_pairs, data.train_tokens):
            if prompt_key(pair.prompt) not in self.data_pairs:  # a prompt's first pair is its data pair
                # the data's pair for the prompt, with its columns (a problem's `answer`, which reward functions read)
                self.data_pairs[prompt_key(pair.prompt)] = RoundPair(
                    pair.prompt, pair.chosen, pair.rejected, columns=dict(pair.columns)
                )
                prompts.append(pair.prompt)
                ids.append(tokens.prompt)
        val = self.out / "val.jsonl"
        if not val.is_file():
            write_pairs(
                val, [RoundPair(p.prompt, p.chosen, p.rejected, columns=dict(p.columns)) for p in data.val_pairs]
            )
        return prompts, ids

    def judges(self) -> Any:
        """The judge that scores the samples (`judge=`) and the one that judges every round's evaluation
        (`judge@eval_judge=`), each resolved once against the run's own config (judge=auto is trained once, or read
        from the cache): the evaluation judge is then a fixed config for every round."""
        scorer = resolve_judge(self.cfg.judge, self.cfg, SCORER)
        evaluator = resolve_judge(self.cfg.get("eval_judge"), self.cfg, EVALUATOR)
        self.eval_judge = evaluator.config if evaluator is not None else None
        return instantiate(scorer.config)(device=self.device, batch_size=self.sampling.batch_size)

    # -- one round -----------------------------------------------------------------------------------------------
    def round(self, r: int, initial: Any, prompts: list[Any], prompt_ids: list[list[int]], judge: Any) -> dict:
        rdir = self.out / f"round_{r}"
        rdir.mkdir(exist_ok=True)
        if (rdir / "eval" / "metrics.json").is_file():
            self.compare(rdir)
            return round_row(r, rdir)
        chosen = self.round_prompts(r, len(prompts))
        if not (rdir / "pairs.jsonl").is_file():
            asked, asked_ids = [prompts[i] for i in chosen], [prompt_ids[i] for i in chosen]
            offline = r < self.cfg.online.get("offline_rounds", 0)  # the data's own pairs: no judge's labels
            if offline:
                data = [self.data_pairs[prompt_key(p)] for p in asked]
                pairs = [replace(pair, chosen_source="data", rejected_source="data") for pair in data]
            else:
                pairs = self.online_pairs(r, rdir, initial, asked, asked_ids, judge)
            write_pairs(rdir / "pairs.jsonl", pairs)
            log.info("round %d: %d pairs from %d prompts", r, len(pairs), len(asked))
            if self.cfg.online.get("read_pairs") and not offline:
                sheet = write_pairs_sheet(
                    rdir, int(self.cfg.online.read_pairs), seed=seeds.round_sheet(int(self.cfg.seed), r)
                )
                log.info("round %d: read %s blind, then: python -m dpo_lightning.evaluation.blind %s --score "
                         "<your verdicts>", r, sheet, rdir)  # fmt: skip
        self.phase_hook("train", r)
        if not (rdir / "train" / "metrics.json").is_file():
            train(round_train_config(self.cfg, self.out, r, rdir))
        if not self.cfg.online.get("keep_checkpoints"):  # a trained round is read from train/final from now on
            shutil.rmtree(rdir / "train" / "checkpoints", ignore_errors=True)
        self.stopper.check(f"after training round {r}", self.out)
        self.phase_hook("evaluate", r)

        evaluate(round_eval_config(self.cfg, rdir, self.eval_judge))
        self.stopper.check(f"after evaluating round {r}", self.out)
        self.compare(rdir)
        return round_row(r, rdir)

    def online_pairs(
        self, r: int, rdir: Path, initial: Any, asked: list[Any], asked_ids: list[list[int]], judge: Any
    ) -> list[RoundPair]:
        """Steps 1-3 of round r: sample the policy's answers, score them, pair best against worst."""
        done = len(read_lines(rdir / "samples.jsonl"))
        if done < len(asked):
            sampler = self.sampler(r, initial)
            started = time.perf_counter()
            try:
                sample_answers(
                    sampler,
                    asked,
                    asked_ids,
                    self.sampling,
                    rdir / "samples.jsonl",
                    self.seed(r),
                    self.chunk_hook("sample", r, rdir),
                )
            finally:
                sampler.close()
                count_sampling(rdir, len(read_lines(rdir / "samples.jsonl")) - done, self.sampling, started)
        samples = [  # what the judge ranks: the policy's answers (and the data's), and the data row's columns
            {**self.rule.candidates(s.to_dict(), self.data_answer(s.prompt)), "columns": self.data_columns(s.prompt)}
            for s in read_samples(rdir / "samples.jsonl")
        ]
        scores = score_answers(
            judge, samples, rdir / "scores.jsonl", self.sampling.prompts_per_chunk, self.chunk_hook("score", r, rdir)
        )
        report: dict[str, Any] = {}
        pairs = build_pairs(samples, scores, self.rule, report, seed=self.seed(r))
        (rdir / "pairs_report.json").write_text(json.dumps(report, indent=2) + "\n")
        log.info("round %d: %s", r, json.dumps(report))
        if not pairs:  # e.g. a model that answers no problem right (model=tiny: random weights) under exact_match
            tied = ", ".join(f"{n} prompts {why}" for why, n in report.get("no_pair", {}).items())
            raise ValueError(f"round {r}: no pair to train on, every prompt's answers tied under the judge ({tied}); "
                             "online.pairs.data_chosen=true ranks the data's chosen answer with them")  # fmt: skip
        return pairs

    def data_columns(self, prompt: Any) -> dict[str, Any]:
        """The data row's other fields for `prompt` (a problem's `answer`): what reward functions read."""
        pair = self.data_pairs.get(prompt_key(prompt))
        return dict(pair.columns) if pair else {}

    def data_answer(self, prompt: Any) -> str | None:
        """The data's chosen answer to `prompt`, as text (None for a prompt not in the data)."""
        pair = self.data_pairs.get(prompt_key(prompt))
        return as_text(pair.chosen) if pair else None

    def compare(self, rdir: Path) -> None:
        """`online.compare_to` (a run, e.g. offline DPO at the same pairs, evaluated on the same held-out prompts):
        the round's greedy answers judged against its answers by the evaluation's judge -> eval/head_to_head.json."""
        target, out = self.cfg.online.get("compare_to"), rdir / "eval" / HEAD_TO_HEAD
        if not target or out.is_file():
            return
        if self.eval_judge is None:
            raise ValueError("online.compare_to needs an evaluation judge (eval_judge=auto, reward or llm)")
        other = Path(str(target)).expanduser()
        other = other / "eval" if (other / "eval" / "generations.jsonl").is_file() else other
        judge = instantiate(self.eval_judge)(device=self.device, batch_size=self.sampling.batch_size)
        result = head_to_head(rdir / "eval", other, judge, seed=int(self.cfg.seed))
        out.write_text(json.dumps(result, indent=2))
        log.info("%s: head to head against %s: win rate %.2f", rdir.name, other, result["win_rate"])

    def sampler(self, r: int, initial: Any) -> HFSampler | VLLMSampler:
        """Round r's sampler over its policy: the initial one, or the previous round's final policy."""
        previous = str(previous_policy(self.out, r))
        if chosen_backend(self.sampling.backend) == "hf":
            policy = initial.model if r == 0 else instantiate(self.cfg.model, init_from=previous).model
            return HFSampler(policy.to(self.device), initial.tokenizer, self.sampling, self.device)
        if r > 0:
            folder = run_final_model(previous)
        elif self.cfg.model.get("init_from"):
            folder = run_final_model(self.cfg.model.init_from)
        elif self.cfg.model.get("name_or_path"):  # a hub id (vLLM downloads it) or a local folder
            folder = resolve_name_or_path(self.cfg.model.name_or_path, self.cfg.model.get("cache_dir"))
        else:  # a random-init model: saved once
            folder = save_policy(initial.model, initial.tokenizer, self.out / "initial_policy")
        return VLLMSampler(folder, self.sampling, self.seed(r), self.sampling.vllm)

    def round_prompts(self, r: int, n: int) -> list[int]:
        """The round's prompts: a seeded choice of `online.prompts_per_round` (all of them when null), in order."""
        k = self.cfg.online.get("prompts_per_round") or n
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seeds.round_prompts(int(self.cfg.seed), r)))
        return sorted(order[: min(k, n)].tolist())

    def seed(self, r: int) -> int:
        return seeds.round_sampling(int(self.cfg.seed), r)

    def chunk_hook(self, phase: str, r: int, rdir: Path) -> Callable[[int], None]:
        def on_chunk(index: int) -> None:
            for hook in self.hooks:
                hook.on_chunk(phase, r, index)
            self.stopper.check(f"during the {phase} phase of round {r} (chunk {index} saved)", self.out)

        return on_chunk

    def phase_hook(self, phase: str, r: int) -> None:
        for hook in self.hooks:
            if hasattr(hook, "on_phase"):
                hook.on_phase(phase, r)


def count_sampling(rdir: Path, prompts: int, sampling: Any, started: float) -> None:
    """The sampling phase's speed (answers per second) in round_<r>/sampling.json, summed over the processes that
    sampled the round (a resumed round adds its part)."""
    path = rdir / "sampling.json"
    seen = json.loads(path.read_text()) if path.is_file() else {"answers": 0, "seconds": 0.0}
    answers = seen["answers"] + prompts * sampling.samples_per_prompt
    seconds = seen["seconds"] + time.perf_counter() - started
    path.write_text(
        json.dumps({"answers": answers, "seconds": seconds, "answers_per_second": answers / max(seconds, 1e-9)})
    )
