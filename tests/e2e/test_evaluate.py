"""evaluate.py end to end on a tiny trained run, checked against direct computations and by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from torch.testing import assert_close
from torch.utils.data import DataLoader

from conftest import run_script, save_tiny_classifier, smoke
from dpo_lightning.core.statistics import wilson
from dpo_lightning.data import PairCollator, TokenizedPair
from dpo_lightning.data.text import as_text
from dpo_lightning.evaluation.diversity import top_opening
from dpo_lightning.evaluation.head_to_head import length_controlled
from dpo_lightning.evaluation.rows import fmt
from dpo_lightning.evaluation.scoring import preference_accuracy, score_pairs
from dpo_lightning.evaluation.verdicts import win_rate
from dpo_lightning.judges.base import Comparison, outcomes_from_scores
from dpo_lightning.judges.reward import RewardJudge

GEN = ["generation.num_prompts=3", "generation.max_new_tokens=8", "bootstrap_resamples=500"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    run_script(
        "train.py", *smoke("data.max_val_pairs=6", "optimizer.lr=1e-2", "trainer.max_steps=3"), f"hydra.run.dir={run}"
    )
    return run


@pytest.fixture(scope="module")
def evaluated(trained_run):
    run_script("evaluate.py", f"run_dir={trained_run}", *GEN)
    return trained_run / "eval"


def test_every_output_exists_and_parses(evaluated):
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert metrics["pairs"] == 6 and metrics["judge"] is None
    for model in ("base", "dpo"):
        for key in (
            "preference_accuracy",
            "preference_accuracy_normalized",
            "mean_response_tokens_greedy",
            "mean_response_tokens_sampled",
        ):
            assert math.isfinite(metrics[model][key])
    r = metrics["implicit_reward"]
    assert r["margin"]["ci_low"] <= r["margin"]["value"] <= r["margin"]["ci_high"]
    assert set(metrics["kl"]) == {"kl_per_sequence", "kl_per_token", "samples"} and metrics["kl"]["samples"] == 3
    rows = [json.loads(line) for line in (evaluated / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(
        set(r) == {"prompt", "prompt_turns", "base_greedy", "dpo_greedy", "base_sampled", "dpo_sampled", "reference"}
        for r in rows
    )  # the built-in prompts are chat turns: recorded as the model saw them, for a judge to read them back
    assert all(r["prompt_turns"] == [{"role": "user", "content": r["prompt"]}] for r in rows)
    assert set(metrics["diversity"]) == {"base", "dpo", "reference"}
    for name, key in (("base", "base_greedy"), ("dpo", "dpo_greedy"), ("reference", "reference")):
        d = metrics["diversity"][name]  # the figures of the answers written to generations.jsonl
        assert d["answers"] == 3 and d["top_opening"] == top_opening([r[key] for r in rows])[0]
    shift = metrics["displacement"]["chosen"]
    assert shift["change"]["value"] == pytest.approx(shift["dpo"]["value"] - shift["base"]["value"])
    keys = [row["key"] for row in metrics["summary"]]
    assert keys[:3] == ["preference_accuracy_per_token", "preference_accuracy", "logp_per_token_chosen"]
    assert {"opening_share", "distinct_2", "repetition"} <= set(keys) and isinstance(metrics["warnings"], list)
    for png in ("margins.png", "logratios.png", "accuracy.png"):
        assert (evaluated / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (evaluated / "report.md").read_text()
    assert "## Summary" in md and "## Warnings" in md and "No judge configured" in md and "![" in md
    html = (evaluated / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "src='http" not in html and 'src="http' not in html


def test_evaluate_adds_its_results_to_the_model_card(trained_run, evaluated):
    metrics = json.loads((evaluated / "metrics.json").read_text())
    card = (trained_run / "final" / "README.md").read_text()
    assert card.startswith("---\n") and "## Final metrics (validation)" in card
    b, d = metrics["base"], metrics["dpo"]
    assert "## Evaluation (evaluate.py)" in card and f"On 6 held-out pairs ({metrics['data']})" in card
    # the card renders the evaluation's summary rows: the same figures as report.md
    summed = next(r for r in metrics["summary"] if r["key"] == "preference_accuracy")
    assert summed["base"]["value"] == b["preference_accuracy"] and summed["dpo"]["value"] == d["preference_accuracy"]
    assert f"| preference accuracy, summed log-prob | {fmt(summed['base'])} | {fmt(summed['dpo'])} | - |" in card
    assert f"| KL(DPO || base) per token | - | {metrics['kl']['kl_per_token']:.3f} | - |" in card


def test_metrics_match_a_direct_computation(trained_run, evaluated):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from transformers import AutoModelForCausalLM

    from dpo_lightning.core.logprobs import plain_sequence_logps

    metrics = json.loads((evaluated / "metrics.json").read_text())
    run_cfg = OmegaConf.load(trained_run / "config.yaml")
    base = instantiate(run_cfg.model)
    policy = AutoModelForCausalLM.from_pretrained(trained_run / "final")
    dm = instantiate(run_cfg.data, tokenizer=base.tokenizer)
    dm.setup()
    batch = PairCollator(dm.collator.pad_token_id)(dm.val_tokens)  # all 6 pairs at once, the textbook way
    with torch.no_grad():
        b, p = plain_sequence_logps(base.model, batch), plain_sequence_logps(policy, batch)
    n = len(dm.val_tokens)
    for name, scores in (("base", b), ("dpo", p)):
        chosen, rejected = scores.logps[:n].double(), scores.logps[n:].double()
        lc, lr = scores.tokens[:n].double(), scores.tokens[n:].double()
        assert metrics[name]["preference_accuracy"] == pytest.approx((chosen > rejected).double().mean().item())
        assert metrics[name]["preference_accuracy_normalized"] == pytest.approx(
            (chosen / lc > rejected / lr).double().mean().item()
        )
        assert metrics[name]["mean_logp_chosen"] == pytest.approx(chosen.mean().item(), rel=1e-5)
    beta = yaml.safe_load((trained_run / "config.yaml").read_text())["loss"]["beta"]
    margins = beta * ((p.logps[:n] - b.logps[:n]) - (p.logps[n:] - b.logps[n:])).double()
    saved = torch.load(evaluated / "rewards.pt")
    # fp32 models: each margin is beta times a difference of differences of sums near -400 (~1e-5 of rounding)
    assert_close(saved["margins"], margins, rtol=1e-3, atol=1e-4)
    assert metrics["implicit_reward"]["margin"]["value"] == pytest.approx(margins.mean().item(), rel=1e-3, abs=1e-4)
    assert (margins.abs() > 1e-3).all()  # no pair within rounding of a tie, so the comparison below is well-defined
    assert metrics["implicit_reward"]["accuracy"]["value"] == pytest.approx((margins > 0).double().mean().item())


def test_judge_with_a_tiny_random_classifier(trained_run, tmp_path):
    save_tiny_classifier(trained_run, tmp_path / "judge")
    out = tmp_path / "eval"
    run_script(
        "evaluate.py",
        f"run_dir={trained_run}",
        f"output_dir={out}",
        "judge=reward",
        f"judge.model={tmp_path / 'judge'}",
        "report_to=wandb",
        *GEN,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    result = metrics["judge"]
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    direct = RewardJudge(str(tmp_path / "judge"))
    for kind in ("greedy", "sampled"):
        w = result[kind]
        dpo = torch.tensor([r[f"judge_dpo_{kind}"] for r in rows], dtype=torch.float64)
        base = torch.tensor([r[f"judge_base_{kind}"] for r in rows], dtype=torch.float64)
        # the saved scores are the judge's, one prompt at a time (no batch padding)
        again = direct.score([r["prompt"] for r in rows], [r[f"dpo_{kind}"] for r in rows])
        assert_close(again, dpo, rtol=0, atol=1e-5)
        assert (w["wins"], w["losses"]) == (int((dpo > base).sum()), int((dpo < base).sum()))
        expected = wilson(w["wins"] + 0.5 * w["ties"], 3)
        got = (w["win_rate"], w["ci_low"], w["ci_high"])
        assert got == pytest.approx((expected.value, expected.low, expected.high))
        assert w["reward_dpo"]["value"] == pytest.approx(dpo.mean().item())
        assert w["reward_dpo"]["ci_low"] <= w["reward_dpo"]["value"] <= w["reward_dpo"]["ci_high"]
        # the win rate at equal length: head_to_head's fit on these answers and the recorded verdicts
        verdicts = [r[f"verdict_dpo_over_base_{kind}"] for r in rows]
        fit = length_controlled([r[f"dpo_{kind}"] for r in rows], [r[f"base_{kind}"] for r in rows], verdicts)
        lc = w["length_controlled"]
        assert (lc["value"], lc["slope"]) == pytest.approx((fit["value"], fit["slope"]))
        summary = next(row for row in metrics["summary"] if row["key"] == f"judge_win_rate_{kind}")
        assert "at equal length" in summary["note"]
    acc = result["accuracy_on_pairs"]
    assert acc["pairs"] == 6 and 0 <= acc["ci_low"] <= acc["value"] <= acc["ci_high"] <= 1
    assert metrics["intervals"] == {"proportions": "Wilson score interval", "means": "BCa bootstrap"}
    for who in ("dpo", "base"):  # each model's greedy answers against the reference answers, by the same judge
        ref = result["reference"][who]
        mine = torch.tensor([r[f"judge_{who}_greedy"] for r in rows], dtype=torch.float64)
        theirs = direct.score([r["prompt"] for r in rows], [r["reference"] for r in rows])
        assert (ref["wins"], ref["losses"]) == (int((mine > theirs).sum()), int((mine < theirs).sum()))
        assert ref["reward_reference"]["value"] == pytest.approx(theirs.mean().item(), abs=1e-6)
    assert result["kind"] == "reward model" and result["self_trained"] is False
    report = (out / "report.md").read_text()
    assert "Judged answers (reward model" in report and "how far to trust it" in report
    assert "Wilson score interval for proportions" in report and "![" in report and "judge.png" in report
    assert (out / "judge.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "wandb").glob("offline-run-*")), "tables and plots were not logged to W&B (offline)"


def test_base_preference_accuracy_by_hand(tokenizer):
    # An all-zero Llama predicts the uniform distribution: every token's log-prob is exactly -log V,
    # so a response of n tokens scores -n log V. Three pairs with (chosen, rejected) lengths (2, 5), (6, 3), (4, 4):
    # summed: only pair 1 prefers chosen (-2 log V > -5 log V), pair 3 ties -> 1/3; per token: all tie -> 0.
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = 50
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=vocab,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            tie_word_embeddings=False,
        )
    )
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    pairs = [
        TokenizedPair([1, 2, 3], [4] * 2, [5] * 5),
        TokenizedPair([1, 2], [6] * 6, [7] * 3),
        TokenizedPair([3], [8] * 4, [9] * 4),
    ]
    scores = score_pairs(model, DataLoader(pairs, batch_size=2, collate_fn=PairCollator(pad_token_id=0)))
    got = preference_accuracy(scores)
    assert got["preference_accuracy"] == pytest.approx(1 / 3)
    assert got["preference_accuracy_normalized"] == 0.0
    assert got["mean_logp_chosen"] == pytest.approx(-(2 + 6 + 4) / 3 * math.log(vocab))
    assert got["mean_logp_rejected"] == pytest.approx(-(5 + 3 + 4) / 3 * math.log(vocab))


def test_win_rate_counts_ties_as_half():
    scores, zero = torch.tensor([1.0, 0.0, -1.0, 0.5], dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    result = win_rate(Comparison(outcomes_from_scores(scores, zero), scores, zero))
    assert (result["wins"], result["ties"], result["losses"]) == (2, 1, 1)
    assert result["win_rate"] == pytest.approx(2.5 / 4)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((wilson(2.5, 4).low, wilson(2.5, 4).high))


@pytest.fixture(scope="module")
def reward_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("reward") / "run"
    # optimizer.lr on the command line: reward.yaml's own lr (for SmolLM2) comes after debug=smoke's
    overrides = smoke("data.max_train_pairs=32", "trainer.max_epochs=3", "data.max_val_pairs=16", "optimizer.lr=1e-3")
    run_script("train_reward.py", *overrides, f"hydra.run.dir={run}")
    return run


def test_a_reward_model_trains_exports_and_scores_like_the_module(reward_run, tokenizer):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from transformers import AutoModelForSequenceClassification

    metrics = json.loads((reward_run / "metrics.json").read_text())
    assert {"train/loss", "train/accuracy", "val/accuracy", "val/margin", "val/rewards/chosen"} <= set(metrics)
    assert metrics["val/accuracy"] > 0.5 and metrics["val/margin"] > 0  # it learned the built-in preferences
    assert list((reward_run / "checkpoints").glob("*.ckpt"))
    model = AutoModelForSequenceClassification.from_pretrained(reward_run / "final").eval()
    config = OmegaConf.load(reward_run / "config.yaml")
    data = instantiate(config.data, tokenizer=tokenizer, report_path=None)
    data.setup()
    batch = PairCollator(pad_token_id=tokenizer.pad_token_id)(data.val_tokens)
    with torch.no_grad():
        scores = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, 0].double()
    chosen, rejected = scores[:16], scores[16:]
    # the export scores the held-out pairs as the module did at its last validation
    assert (chosen - rejected).mean().item() == pytest.approx(metrics["val/margin"], abs=1e-5)
    assert chosen.mean().item() == pytest.approx(metrics["val/rewards/chosen"], abs=1e-5)
    assert (chosen > rejected).double().mean().item() == pytest.approx(metrics["val/accuracy"])
    # ... and as a judge it renders (prompt, response) text back to the same tokens
    judge = RewardJudge(str(reward_run / "final"))
    judged = judge.score([p.prompt for p in data.val_pairs], [as_text(p.chosen) for p in data.val_pairs])
    assert_close(judged, chosen, rtol=0, atol=1e-5)
    card = (reward_run / "final" / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "A reward model (Bradley–Terry, **BradleyTerryLoss**" in card
    assert "Trained with `python train_reward.py debug=smoke" in card and "judge=reward judge.model=" in card


def test_evaluate_with_the_trained_reward_model_as_judge(trained_run, reward_run, tmp_path):
    out = tmp_path / "eval"
    run_script(
        "evaluate.py",
        f"run_dir={trained_run}",
        f"output_dir={out}",
        "judge=reward",
        f"judge.model={reward_run / 'final'}",
        *GEN,
    )
    metrics = json.loads((out / "metrics.json").read_text())
    judge = metrics["judge"]
    assert judge["model"] == str(reward_run / "final")
    # a train_reward.py run on the same built-in training pairs as the policy: flagged as grading its own homework
    assert judge["trained_on"] == "builtin:train" and judge["self_trained"] is True
    assert any("grades its own homework" in w for w in metrics["warnings"])
    assert judge["greedy"]["wins"] + judge["greedy"]["ties"] + judge["greedy"]["losses"] == 3
    # the judge's accuracy on the 6 held-out pairs is the reward model's own: it learned them
    assert judge["accuracy_on_pairs"]["pairs"] == 6 and judge["accuracy_on_pairs"]["value"] >= 0.5


def test_judge_auto_trains_once_on_the_runs_data_and_is_cached(trained_run, tmp_path, caplog):
    import logging

    from omegaconf import OmegaConf

    from dpo_lightning.tasks.judge_training import cached_judge, judge_config, judge_key

    run_config = OmegaConf.load(trained_run / "config.yaml")
    small = {"trainer": {"max_epochs": 1}}
    cfg = judge_config(run_config, small)
    assert cfg.module._target_ == "dpo_lightning.lightning.reward.RewardModule" and cfg.data.packing is False
    assert cfg.data.path == run_config.data.path and cfg.model.name_or_path == run_config.model.name_or_path
    with caplog.at_level(logging.INFO, logger="dpo_lightning.tasks.judge_training"):
        first = cached_judge(run_config, small, cache_dir=str(tmp_path))
        second = cached_judge(run_config, small, cache_dir=str(tmp_path))
    assert first == second == str(tmp_path / "judges" / judge_key(cfg) / "final")
    mine = [r.message.split(" ")[0] for r in caplog.records if r.name == "dpo_lightning.tasks.judge_training"]
    assert mine == ["Training", "Judge"]  # trained once, then read from the cache
    assert judge_key(judge_config(run_config, {"trainer": {"max_epochs": 2}})) != judge_key(cfg)
    disjoint = judge_config(run_config, small, data_path="builtin:judge")  # judge=auto on the built-in set
    assert disjoint.data.path == "builtin:judge" and disjoint.data.val_path == run_config.data.val_path
    assert judge_key(disjoint) != judge_key(cfg)
    metrics = json.loads((tmp_path / "judges" / judge_key(cfg) / "metrics.json").read_text())
    assert metrics["val/accuracy"] >= 0 and "val/margin" in metrics
    # with derived negatives: each training pair once more, its chosen answer against its looped first sentence
    looped = Path(cached_judge(run_config, small, cache_dir=str(tmp_path), negatives=["loop"]))
    assert looped.parent.name != judge_key(cfg)
    rows = [json.loads(line) for line in (looped.parents[1] / f"{looped.parent.name}.pairs.jsonl").open()]
    given = [r for r in rows if r["kind"] == "given"]
    assert len(rows) == 2 * len(given) and {r["kind"] for r in rows} == {"given", "loop"}
    assert len(given) == run_config.data.max_train_pairs  # the run's cap (16) applies to the given pairs
    report = json.loads((looped.parent / "data_report.json").read_text())
    assert report["train"]["pairs"] == len(rows)  # ... and the judge learns them all, with their negatives
