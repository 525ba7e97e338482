"""train_online.py end to end on the tiny model: two rounds of sample -> score -> pairs -> DPO -> evaluate, and a run
stopped by SIGTERM in each phase in turn (sampling, scoring, training) that resumes to the same pairs and the same
final metrics as the uninterrupted run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, run_script, smoke
from dpo_lightning.lightning.callbacks import PREEMPTED_EXIT_CODE

HERE = os.path.dirname(__file__)
ONLINE = [
    "train_online.py",
    *smoke(
        "online.rounds=2",
        "online.prompts_per_round=4",
        "online.sampling.samples_per_prompt=2",
        "online.sampling.max_new_tokens=8",
        "online.sampling.batch_size=4",  # 2 prompts a chunk: 2 chunks per phase
        "online.eval.generation.num_prompts=3",
        "online.eval.generation.max_new_tokens=8",
        "+online.eval.bootstrap_resamples=200",
        "data.batch_size=2",  # 2 optimizer steps a round (4 pairs)
        "data.max_val_pairs=6",
    ),
]


def online_process(*args: str, paths: tuple[str, ...] = (), **env: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join([*paths, HERE, os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, **env}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    run = tmp_path_factory.mktemp("online") / "run"
    run_script(*ONLINE, f"hydra.run.dir={run}")
    return run


def test_two_rounds_write_their_files_and_a_table(straight):
    for r in (0, 1):
        rdir = straight / f"round_{r}"
        samples = [json.loads(line) for line in (rdir / "samples.jsonl").read_text().splitlines()]
        scores = [json.loads(line)["scores"] for line in (rdir / "scores.jsonl").read_text().splitlines()]
        pairs = [json.loads(line) for line in (rdir / "pairs.jsonl").read_text().splitlines()]
        assert len(samples) == len(scores) == 4 and all(
            len(s["answers"]) == 2 == len(x) for s, x in zip(samples, scores)
        )
        for pair in pairs:  # each pair is its prompt's better answer against its worse one, by the judge's scores
            sample, score = next((s, x) for s, x in zip(samples, scores) if s["prompt"] == pair["prompt"])
            assert pair["chosen_score"] == max(score) > min(score) == pair["rejected_score"]
            # the built-in prompts are chat turns (data.chat_template=true): the answers are assistant turns
            best = sample["answers"][score.index(max(score))]
            assert pair["chosen"] == [{"role": "assistant", "content": best}]
        assert (rdir / "train" / "final" / "config.json").is_file() and (rdir / "eval" / "metrics.json").is_file()
        assert not (rdir / "train" / "checkpoints").exists()  # online.keep_checkpoints=false: the round is done
        config = yaml.safe_load((rdir / "train" / "config.yaml").read_text())
        assert config["data"]["path"] == str(rdir / "pairs.jsonl")
        assert config["data"]["val_path"] == str(straight / "val.jsonl")
    # each round's blind sheet of its pairs (online.read_pairs): the reader who takes the judge's side every time
    # agrees with it on every pair
    from dpo_lightning.evaluation.blind import KEY_FILE, score

    key = json.loads((straight / "round_1" / KEY_FILE).read_text())
    assert len(key["first_is"]) == len(pairs) and (straight / "round_1" / "blind.md").is_file()
    (straight / "verdicts.txt").write_text(" ".join(key["first_is"]))
    assert score(straight / "round_1", straight / "verdicts.txt")["judge_agreement"]["rate"] == 1.0
    later = yaml.safe_load((straight / "round_1" / "train" / "config.yaml").read_text())
    assert later["model"]["init_from"] == str(straight / "round_0" / "train")  # from the previous round's policy
    assert later["module"]["reference"]["init_from"] is None  # online.reference=initial: the initial policy
    evaluation = json.loads((straight / "round_1" / "eval" / "metrics.json").read_text())
    assert evaluation["judge"]["self_trained"] is False  # the evaluation's judge learned the built-in judge split
    with open(straight / "rounds.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["round"] for row in rows] == ["0", "1"]
    assert float(rows[1]["win_rate"]) == pytest.approx(evaluation["judge"]["greedy"]["win_rate"])
    assert (straight / "rounds.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sigterm_in_each_phase_resumes_to_the_same_pairs_and_metrics(straight, tmp_path):
    run = tmp_path / "run"
    stops = [
        [
            "+online.hooks.stop._target_=signal_injection.SignalAtChunk",
            "+online.hooks.stop.phase=sample",
            "+online.hooks.stop.round=0",
            "+online.hooks.stop.chunk=0",
            f"+online.hooks.stop.once_file={tmp_path}/s",
        ],
        [
            "+online.hooks.stop._target_=signal_injection.SignalAtChunk",
            "+online.hooks.stop.phase=score",
            "+online.hooks.stop.round=1",
            "+online.hooks.stop.chunk=0",
            f"+online.hooks.stop.once_file={tmp_path}/c",
        ],
        [
            "+callbacks.send_signal._target_=signal_injection.SendSignal",
            "+callbacks.send_signal.at_step=0",
            f"+callbacks.send_signal.once_file={tmp_path}/t",
        ],
    ]
    where = []
    keep = "online.keep_checkpoints=true"  # (no effect on the figures) each round's checkpoints stay
    for i, stop in enumerate(stops):
        proc = online_process(*ONLINE, *stop, keep, f"hydra.run.dir={run}", *(["resume=true"] if i else []))
        assert proc.returncode == PREEMPTED_EXIT_CODE, proc.stderr[-3000:]
        where.append(next(line for line in (proc.stdout + proc.stderr).splitlines() if "preempted by SIGTERM" in line))
    assert "sample phase of round 0 (chunk 0 saved)" in where[0]
    assert "score phase of round 1 (chunk 0 saved)" in where[1]
    assert "after optimizer step 1" in where[2]  # round 1's training, checkpointed after its first step
    done = online_process(*ONLINE, keep, f"hydra.run.dir={run}", "resume=true")
    assert done.returncode == 0, done.stderr[-3000:]
    assert all(any((run / f"round_{r}" / "train" / "checkpoints").glob("*.ckpt")) for r in (0, 1))
    for r in (0, 1):
        for name in ("samples.jsonl", "scores.jsonl", "pairs.jsonl"):
            assert (run / f"round_{r}" / name).read_text() == (straight / f"round_{r}" / name).read_text(), name
    a = json.loads((straight / "round_1" / "train" / "metrics.json").read_text())
    b = json.loads((run / "round_1" / "train" / "metrics.json").read_text())
    for key, value in a.items():
        if not key.startswith(("train/step_seconds", "train/tokens_per_second", "train/peak_memory")):
            assert b[key] == pytest.approx(value, abs=1e-5), key
    assert without_timing(run / "rounds.csv") == without_timing(straight / "rounds.csv")


def without_timing(path) -> list[dict]:
    """The rounds table without the sampling phase's speed (the machine's, never the same twice)."""
    with open(path) as f:
        return [{k: v for k, v in row.items() if k != "answers_per_second"} for row in csv.DictReader(f)]


def test_the_vllm_backend_samples_each_round_from_that_rounds_policy_folder(straight, tmp_path):
    """online.sampling.backend=vllm, with a stand-in for vLLM's API (tests/e2e/fake_vllm: it loads the folder it is
    given with transformers): round 0 samples from the initial policy saved as a folder, round 1 from round 0's
    final policy, in chunks of batch_size / K prompts with K answers each, seeded per chunk. With
    online.compare_to, each round's answers are also judged head to head against another run's (the hf run's); with
    online.pairs.data_chosen, the data's chosen answer is ranked with the samples."""
    run, log = tmp_path / "run", tmp_path / "vllm.jsonl"
    proc = online_process(
        *ONLINE,
        "online.sampling.backend=vllm",
        "online.sampling.vllm.gpu_memory_utilization=0.2",
        f"online.compare_to={straight / 'round_1'}",
        "online.pairs.data_chosen=true",
        f"hydra.run.dir={run}",
        paths=(os.path.join(HERE, "fake_vllm"),),
        FAKE_VLLM_LOG=str(log),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    engines = [c for c in calls if "engine" in c]
    assert [e["engine"] for e in engines] == [str(run / "initial_policy"), str(run / "round_0" / "train" / "final")]
    assert all(e["args"] == {"gpu_memory_utilization": 0.2} for e in engines)
    assert engines[0]["seed"] != engines[1]["seed"]
    requests = [c for c in calls if "prompts" in c]
    assert [r["prompts"] for r in requests] == [2, 2, 2, 2]  # 2 rounds x 2 chunks of 2 prompts
    params = {(r["params"]["n"], r["params"]["temperature"], r["params"]["max_tokens"]) for r in requests}
    assert params == {(2, 1.0, 8)}
    seeds = [r["params"]["seed"] for r in requests]
    assert seeds[1] == seeds[0] + 2 and seeds[3] == seeds[2] + 2 and seeds[2] != seeds[0]  # seeded by chunk
    for r in (0, 1):
        samples = [json.loads(line) for line in (run / f"round_{r}" / "samples.jsonl").read_text().splitlines()]
        assert len(samples) == 4 and all(len(s["answers"]) == 2 for s in samples)
        scores = [json.loads(line)["scores"] for line in (run / f"round_{r}" / "scores.jsonl").read_text().splitlines()]
        assert all(len(x) == 3 for x in scores)  # 2 samples and the data's chosen answer (online.pairs.data_chosen)
        pairs = [json.loads(line) for line in (run / f"round_{r}" / "pairs.jsonl").read_text().splitlines()]
        assert pairs and all({p["chosen_source"], p["rejected_source"]} <= {"policy", "data"} for p in pairs)
        h2h = json.loads((run / f"round_{r}" / "eval" / "head_to_head.json").read_text())
        assert h2h["second"] == str(straight / "round_1" / "eval") and h2h["wins"] + h2h["ties"] + h2h["losses"] == 3
    with open(run / "rounds.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[1]["head_to_head"]) == pytest.approx(h2h["win_rate"])  # round 1's, in the rounds table
    assert float(rows[1]["head_to_head_equal_length"]) == pytest.approx(h2h["length_controlled"]["value"])


def test_offline_rounds_learn_the_data_pairs_then_the_loop_goes_online(straight, tmp_path):
    """online.offline_rounds=1 (offline data first, then online): round 0 samples nothing and trains on the data's
    own pairs of the prompts the straight run's round 0 sampled; round 1 samples round 0's policy and pairs its
    answers. With online.reference=previous, round 1's reference is round 0's policy (its starting point)."""
    from dpo_lightning.data.text import as_text
    from dpo_lightning.tasks.online.pairs import read_lines

    run = tmp_path / "run"
    proc = online_process(*ONLINE, "online.offline_rounds=1", "online.reference=previous", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    builtin = read_lines(ROOT / "src" / "dpo_lightning" / "data" / "builtin" / "train.jsonl")
    data = {(row["chosen"], row["rejected"]) for row in builtin}
    first = run / "round_0"
    assert not (first / "samples.jsonl").exists() and not (first / "scores.jsonl").exists()
    assert not (first / "blind.md").exists() and (run / "round_1" / "blind.md").is_file()  # no judge's labels to read
    pairs = read_lines(first / "pairs.jsonl")
    assert [p["prompt"] for p in pairs] == [s["prompt"] for s in read_lines(straight / "round_0" / "samples.jsonl")]
    assert all((as_text(p["chosen"]), as_text(p["rejected"])) in data for p in pairs)
    assert all(p["chosen_source"] == p["rejected_source"] == "data" for p in pairs)
    second = run / "round_1"
    samples, pairs = read_lines(second / "samples.jsonl"), read_lines(second / "pairs.jsonl")
    assert len(samples) == 4 and pairs and all(p["chosen_score"] > p["rejected_score"] for p in pairs)
    assert all(as_text(p["chosen"]) in sum((s["answers"] for s in samples), []) for p in pairs)
    config = yaml.safe_load((second / "train" / "config.yaml").read_text())
    assert config["model"]["init_from"] == str(first / "train") and not config["module"].get("reference")
    assert (second / "eval" / "metrics.json").is_file()
    with open(run / "rounds.csv") as f:
        assert [row["pairs"] for row in csv.DictReader(f)] == ["4", str(len(pairs))]


VERIFIABLE = [  # the loop on the built-in word problems, judged by reward functions (exact_match and a user's own)
    "data=arithmetic",
    "data.max_train_pairs=8",
    "judge=function",
    "judge@eval_judge=function",
    "judge.functions=[{_target_: dpo_lightning.judges.functions.exact_match}, {_target_: rewards_for_tests.shorter}]",
    "online.eval.accuracy.samples=2",
    "online.eval.accuracy.max_new_tokens=8",
]


def test_reward_functions_judge_the_loop_and_every_round_reports_held_out_accuracy(tmp_path):
    """judge=function end to end on data=arithmetic (the tiny model answers nothing right: its pairs come from the
    user's length function, beside exact_match); each round's evaluation reports exact-match accuracy on the
    held-out problems; SIGTERM in round 1's scoring phase resumes to the same pairs and table."""
    from dpo_lightning.tasks.online.pairs import read_lines

    straight, run = tmp_path / "straight", tmp_path / "run"
    proc = online_process(*ONLINE, *VERIFIABLE, f"hydra.run.dir={straight}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for r in (0, 1):
        rdir = straight / f"round_{r}"
        pairs = read_lines(rdir / "pairs.jsonl")
        answers = {json.dumps(s["prompt"]): s for s in read_lines(rdir / "samples.jsonl")}
        assert pairs and all(p["answer"].endswith(".") and "operation" in p for p in pairs)  # the problems' columns
        for pair in pairs:  # the shorter answer (nothing is right): the judge's weighted sum
            chosen, rejected = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
            assert len(chosen.split()) < len(rejected.split()) and json.dumps(pair["prompt"]) in answers
        report = json.loads((rdir / "pairs_report.json").read_text())
        assert report["prompts"] == 4 and report["pairs"] == len(pairs)
        assert json.loads((rdir / "sampling.json").read_text())["answers_per_second"] > 0
        accuracy = json.loads((rdir / "eval" / "metrics.json").read_text())["accuracy"]
        assert accuracy["problems"] == 6 and accuracy["samples"] == 2 and accuracy["function"] == "exact_match"
        assert accuracy["base_reused"] is (r == 1)  # round 1 reads base's answers from round 0's
        assert len(read_lines(rdir / "eval" / "accuracy.jsonl")) == 6
    with open(straight / "rounds.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"accuracy", "pass_at_k", "majority_at_k", "answers_per_second", "prompts_without_pair"} <= set(rows[0])
    stop = [
        "+online.hooks.stop._target_=signal_injection.SignalAtChunk",
        "+online.hooks.stop.phase=score",
        "+online.hooks.stop.round=1",
        "+online.hooks.stop.chunk=0",
        f"+online.hooks.stop.once_file={tmp_path}/c",
    ]
    stopped = online_process(*ONLINE, *VERIFIABLE, *stop, f"hydra.run.dir={run}")
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr[-3000:]
    done = online_process(*ONLINE, *VERIFIABLE, f"hydra.run.dir={run}", "resume=true")
    assert done.returncode == 0, done.stderr[-3000:]
    for r in (0, 1):
        for name in ("samples.jsonl", "scores.jsonl", "pairs.jsonl"):
            assert (run / f"round_{r}" / name).read_text() == (straight / f"round_{r}" / name).read_text(), name
