"""evaluate.py end to end on a tiny trained run, checked against direct computations and by hand."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from torch.testing import assert_close
from torch.utils.data import DataLoader

from conftest import run_script, smoke
from dpo_lightning.data import PairCollator, TokenizedPair
from dpo_lightning.evaluation.judge import win_rate
from dpo_lightning.evaluation.scoring import bootstrap_mean, preference_accuracy, score_pairs

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
        set(r) == {"prompt", "base_greedy", "dpo_greedy", "base_sampled", "dpo_sampled"} for r in rows
    )
    for png in ("margins.png", "logratios.png", "accuracy.png"):
        assert (evaluated / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (evaluated / "report.md").read_text()
    assert "Base vs DPO" in md and "No judge configured" in md and "![" in md
    html = (evaluated / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "src='http" not in html and 'src="http' not in html


def test_evaluate_adds_its_results_to_the_model_card(trained_run, evaluated):
    metrics = json.loads((evaluated / "metrics.json").read_text())
    card = (trained_run / "final" / "README.md").read_text()
    assert card.startswith("---\n") and "## Final metrics (validation)" in card
    b, d = metrics["base"], metrics["dpo"]
    assert "## Evaluation (evaluate.py)" in card and f"On 6 held-out pairs ({metrics['data']})" in card
    assert f"| {b['preference_accuracy']:.3f} | {d['preference_accuracy']:.3f} |" in card
    assert f"KL(DPO || base): {metrics['kl']['kl_per_token']:.4f} per response token" in card


def test_metrics_match_a_direct_computation(trained_run, evaluated):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from transformers import AutoModelForCausalLM

    from dpo_lightning.logprobs import plain_sequence_logps

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
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(trained_run / "final")
    torch.manual_seed(0)
    judge = LlamaForSequenceClassification(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_labels=1,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    judge.save_pretrained(tmp_path / "judge")
    tokenizer.save_pretrained(tmp_path / "judge")
    out = tmp_path / "eval"
    run_script(
        "evaluate.py",
        f"run_dir={trained_run}",
        f"output_dir={out}",
        f"judge={tmp_path / 'judge'}",
        "report_to=wandb",
        *GEN,
    )
    result = json.loads((out / "metrics.json").read_text())["judge"]
    assert result["wins"] + result["ties"] + result["losses"] == 3
    assert result["ci_low"] <= result["win_rate"] <= result["ci_high"] and 0 <= result["win_rate"] <= 1
    assert "Judge win rate of DPO against base" in (out / "report.md").read_text()
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
    result = win_rate(torch.tensor([1.0, 0.0, -1.0, 0.5], dtype=torch.float64), torch.zeros(4, dtype=torch.float64))
    assert (result["wins"], result["ties"], result["losses"]) == (2, 1, 1)
    assert result["win_rate"] == pytest.approx(2.5 / 4)
    ci = bootstrap_mean(torch.tensor([0.0, 1.0] * 50), resamples=1000)
    assert ci.value == 0.5 and 0.35 < ci.low < 0.5 < ci.high < 0.65  # ~ +-1.96 * 0.05
