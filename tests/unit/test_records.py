"""The evaluation's files as typed records: one writer and one reader each, the key order of 0.1's files kept, a
file of 0.1 (no schema, no accuracy section) still read, and a newer schema refused by name."""

from __future__ import annotations

import json

import pytest

from dpo_lightning.evaluation.records import SCHEMA, EvaluationRecord, Generation, read_generations, write_generations


def test_a_generation_keeps_the_files_key_order_and_what_it_does_not_know(tmp_path):
    row = {"prompt": "q", "prompt_turns": [{"role": "user", "content": "q"}], "base_greedy": "b", "dpo_greedy": "d",
           "base_sampled": "bs", "dpo_sampled": "ds", "reference": "r", "judge_dpo_greedy": 1.5,
           "judge_base_greedy": 0.5, "verdict_dpo_over_base_greedy": 1.0, "a_later_field": [1, 2]}  # fmt: skip
    write_generations(tmp_path, [Generation.from_dict(row), Generation.from_dict({"prompt": "p", "dpo_greedy": "x"})])
    lines = (tmp_path / "generations.jsonl").read_text().splitlines()
    assert list(json.loads(lines[0])) == list(row) and json.loads(lines[0]) == row  # the same keys, in the same order
    first, second = read_generations(tmp_path)
    assert first["dpo_greedy"] == "d" and first.get("a_later_field") == [1, 2] and "judge_dpo_sampled" not in first
    assert second.to_dict() == {"prompt": "p", "dpo_greedy": "x"} and second.get("base_greedy", "-") == "-"
    with pytest.raises(FileNotFoundError, match="no generations"):
        read_generations(tmp_path / "missing")


def test_metrics_of_every_schema_read_and_a_newer_one_is_refused(tmp_path):
    old = {"pairs": 50, "data": "builtin:val", "kl": {"kl_per_token": 0.8}, "warnings": ["w"],
           "displacement": {"chosen": {"change": {"value": 0.09, "ci_low": 0.0, "ci_high": 0.2}}},
           "diversity": {"dpo": {"opening_share": {"value": 0.18}}},
           "judge": {"kind": "reward model", "model": "/j", "greedy": {"win_rate": 0.78}}}  # fmt: skip
    (tmp_path / "metrics.json").write_text(json.dumps(old))  # 0.1's layout: no schema, no accuracy
    record = EvaluationRecord.read(tmp_path)
    assert record.schema == 1 and record.accuracy is None and record.warnings == ["w"] and record.pairs == 50
    assert (record.judge_kind, record.judge_model, record.win_rate()["win_rate"]) == ("reward model", "/j", 0.78)
    assert record.kl_per_token == 0.8 and record.share("opening_share") == 0.18 and record.share("distinct_2") is None
    assert record.displacement()["value"] == 0.09 and record.win_rate_against_reference() is None
    (tmp_path / "metrics.json").write_text(json.dumps({**old, "schema": SCHEMA + 1}))
    with pytest.raises(ValueError, match=f"metrics schema {SCHEMA + 1}, newer than this version reads"):
        EvaluationRecord.read(tmp_path)


def test_judges_cached_before_the_layers_keep_their_key():
    """judge=auto's cache key of the main job (docs/main_job.md: ad909e645b532028) from a run config of 0.1, and the
    same key from today's config of the same job: a judge trained before the package's layers still serves."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from conftest import compose
    from dpo_lightning.tasks.judge_training import judge_config, judge_key

    def key(run_config):
        cfg = judge_config(run_config, None, "builtin:judge")
        cfg.negatives = ["off_topic", "loop"]
        return judge_key(cfg)

    old = OmegaConf.load(Path(__file__).parent / "fixtures" / "main_job_config_0.1.yaml")
    assert key(old) == "ad909e645b532028"
    assert key(compose("experiment=main", "model.init_from=/runs/main/sft")) == "ad909e645b532028"
    assert key(compose()) == "ad909e645b532028"  # `python train.py` trains LoRA DPO; its judge, every weight
    assert not judge_config(compose(), None, "builtin:judge").peft
