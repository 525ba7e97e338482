"""Which judges an online run uses (issue 45): the evaluation's judge where the user set only the scorer, the
documented commands' judges unchanged, and judge=auto on problems with answers refused in one line naming the
option and what to set, before anything loads; the auto judge's training reads each held-out row with its format."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from dpo_lightning.config import ConfigError, compose_config
from dpo_lightning.tasks.judge_training import _write_with_negatives, check_judge_data, judge_config, problem_rows
from dpo_lightning.tasks.judges import resolve_judge
from dpo_lightning.tasks.online.judging import settle_judges

TINY = ("model=tiny", "paths.output_dir=unused")


def online(*overrides: str):
    return compose_config("online", [*TINY, *overrides])


def settled(*overrides: str) -> dict:
    cfg = online(*overrides)
    settle_judges(cfg)
    return OmegaConf.to_container(cfg, resolve=True)


def test_the_documented_commands_keep_their_judges():
    auto = OmegaConf.to_container(compose_config("eval", ["run_dir=unused", "judge=auto"]).judge)
    default = settled()
    assert default["eval_judge"] == auto  # what `judge@eval_judge: auto` composed to before: disjoint pairs
    assert default["judge"]["model"]["data"] == "builtin:train"  # auto_own: the run's own pairs score the samples
    reward = settled("judge=reward", "judge.model=/some/reward/model")  # conf/online.yaml's example
    assert reward["eval_judge"] == auto and reward["judge"]["model"] == "/some/reward/model"
    experiment = settled("experiment=arithmetic_online")
    function = "dpo_lightning.judges.functions.FunctionJudge"
    assert experiment["judge"]["_target_"] == experiment["eval_judge"]["_target_"] == function
    chosen = settled("judge@eval_judge=llm", "eval_judge.model=/some/chat/model")  # set: kept as set
    assert chosen["eval_judge"]["_target_"].endswith("LLMJudge") and chosen["eval_judge"]["model"] == "/some/chat/model"


def test_on_problems_the_evaluation_follows_the_only_judge_set():
    cfg = settled("data=arithmetic", "judge=function", "judge.weights=[2.0]")
    assert cfg["eval_judge"] == cfg["judge"]  # judge=function as given: exact_match, weight 2
    assert cfg["eval_judge"]["weights"] == [2.0]


@pytest.mark.parametrize(
    ("overrides", "named", "advice"),
    [
        (["judge=function", "judge@eval_judge=auto"], "judge@eval_judge=auto cannot", "set judge@eval_judge=function"),
        ([], "judge=auto_own cannot", "set judge=function"),  # the scorer, which the evaluation follows here
        (["judge=auto"], "judge=auto cannot", "set judge=function"),
    ],
)
def test_judge_auto_on_problems_is_refused_in_one_line(overrides, named, advice):
    with pytest.raises(ConfigError) as refused:
        settle_judges(online("data=arithmetic", *overrides))
    message = str(refused.value)
    assert "\n" not in message and message.startswith(named) and advice in message
    assert "builtin:arithmetic holds problems with answers" in message and "judge@eval_judge" in message


def test_problems_are_the_problems_format_or_rows_carrying_answers(tmp_path):
    assert problem_rows(online("data=arithmetic").data) and problem_rows(online("data=gsm8k").data)  # (no download)
    assert problem_rows(online().data) is None and problem_rows(online().data, "builtin:judge") is None
    rounds = tmp_path / "pairs.jsonl"  # an online round's pairs of answers to problems (what its train/ learned)
    row = {"prompt": "2 + 2?", "chosen": "4. The answer is 4.", "rejected": "The answer is 5.", "answer": 4}
    rounds.write_text(json.dumps(row) + "\n")
    run = compose_config("train", [*TINY, "data=jsonl", f"data.path={rounds}"])
    assert "rows carry an `answer`" in problem_rows(run.data)
    with pytest.raises(ConfigError, match=r"^judge=auto cannot judge this run: .*pairs.jsonl's rows carry"):
        resolve_judge(compose_config("eval", ["run_dir=unused", "judge=auto"]).judge, run)  # evaluate.py's call
    rounds.write_text(json.dumps({k: v for k, v in row.items() if k != "answer"}) + "\n")
    check_judge_data(run)  # hand-written pairs: a reward model can learn them


def test_the_judges_training_reads_held_out_rows_with_their_own_format(tmp_path):
    """A data option whose held-out rows are not preference rows (here HH's dialogues, data.val_path): the judge's
    pairs are rewritten as preference rows with its derived negatives, and so are its held-out rows, read with HH's
    format, never as pairs of the raw rows."""
    from dpo_lightning.data import HHFormat
    from dpo_lightning.data.readers import iter_rows

    def dialogue(q: str, a: str) -> str:
        return f"\n\nHuman: {q}\n\nAssistant: {a}"

    for name, n in (("train", 4), ("val", 2)):
        rows = [{"chosen": dialogue(f"{name} {i}?", "Yes, gladly."), "rejected": dialogue(f"{name} {i}?", "No.")}
                for i in range(n)]  # fmt: skip
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = compose_config("train", [*TINY, "data=hh", f"data.path={tmp_path / 'train.jsonl'}"])
    OmegaConf.update(run, "data.val_path", str(tmp_path / "val.jsonl"))
    cfg = judge_config(run)
    _write_with_negatives(cfg, ["loop"], tmp_path / "judge.pairs.jsonl")
    assert cfg.data.format._target_.endswith("PreferenceFormat") and cfg.data.val_path == str(
        tmp_path / "judge.val.jsonl"
    )
    held_out = [json.loads(line) for line in (tmp_path / "judge.val.jsonl").read_text().splitlines()]
    expected = HHFormat().load(iter_rows(str(tmp_path / "val.jsonl")))
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in held_out] == [
        (p.prompt, p.chosen, p.rejected) for p in expected
    ]
    assert held_out[0]["prompt"].rstrip().endswith("Assistant:") and held_out[0]["chosen"].strip() == "Yes, gladly."
