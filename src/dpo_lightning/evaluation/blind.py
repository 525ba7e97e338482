"""Read the answers blind: the evaluation's greedy answers of two models, A/B order shuffled, for a person to judge
without knowing which side is which; then the verdicts scored against the hidden key.

    python -m dpo_lightning.evaluation.blind <run>/eval                 # writes blind.md and blind_key.json
    python -m dpo_lightning.evaluation.blind <run>/eval --score verdicts.txt
    python -m dpo_lightning.evaluation.blind <run A>/eval --against <run B>/eval   # two trained models, head to head
    python -m dpo_lightning.evaluation.blind <online run> --pairs 40    # the loop's judge's pairs: chosen vs rejected

`blind.md` lists every prompt with answers A and B (and, with `--reference`, the held-out reference answer, shown as
such). The reader writes one verdict per prompt, in order, into a text file: `A`, `B` or `T` (tie), separated by
spaces or newlines. `--score` prints the first model's wins, ties and losses and its win rate (a tie counting half)
with its Wilson interval: the figure to set beside a judge's, since a judge can be gamed and a reader cannot. Where
the evaluation recorded its judge's verdict on each prompt (generations.jsonl for its two models; head_to_head.json
for a sheet `--against` another evaluation), it also prints how often that judge agrees with the reader, over the
prompts both decided: near 0.5 (chance), the judge cannot tell these two models apart, whatever its win rate says.

`--pairs N` reads what an online run learned from: N of its rounds' pairs (every `round_*/pairs.jsonl` under the
folder, or one file), drawn by the seed, each pair's chosen and rejected answers shuffled. `--score` then prints how
often the reader prefers the loop's judge's chosen answer: the accuracy of the labels DPO was trained on, which
offline DPO's hand-written pairs have by construction and which no figure of the loop's own can show.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from ..core.records import RoundPair, read_pairs
from ..core.statistics import wilson
from ..data.text import as_text, prompt_text
from ..judges.llm import LLMJudge
from ..judges.reward import RewardJudge
from .head_to_head import HEAD_TO_HEAD, paired_answers, read_generations

KEY_FILE, SHEET_FILE = "blind_key.json", "blind.md"


def write_sheet(
    eval_dir: Path,
    first: str = "dpo_greedy",
    second: str = "base_greedy",
    seed: int = 0,
    reference: bool = False,
    against: Path | None = None,
) -> Path:
    """blind.md (prompts with answers A/B in a seeded random order) and blind_key.json (which side is `first`).
    With `against` (another evaluation on the same prompts), the second answers are its own `first` field: two
    trained models' answers of the same kind, head to head."""
    rows = read_generations(eval_dir)
    if against is None:
        firsts, seconds = [row[first] for row in rows], [row[second] for row in rows]
    else:
        _, firsts, seconds = paired_answers(eval_dir, against, first)
        second = f"{against}:{first}"
    rng = random.Random(seed)
    key, parts = [], []
    for i, row in enumerate(rows):
        swap = rng.random() < 0.5
        a, b = (seconds[i], firsts[i]) if swap else (firsts[i], seconds[i])
        key.append("B" if swap else "A")
        ref = f"(reference answer: {row.get('reference', '')})\n\n" if reference else ""
        parts.append(f"## {i}\nQ: {row['prompt']}\n\n{ref}A: {a}\n\nB: {b}\n")
    sheet = eval_dir / SHEET_FILE
    sheet.write_text(f"# Blind reading: {len(rows)} prompts. Verdicts: A, B or T, one per prompt, in order.\n\n"
                     + "\n".join(parts))  # fmt: skip
    (eval_dir / KEY_FILE).write_text(json.dumps({"first": first, "second": second, "first_is": key}))
    return sheet


def pairs_files(path: Path) -> list[Path]:
    """The pairs files of an online run (its `round_*/pairs.jsonl`, in round order), of a round, or the file itself."""
    if path.is_file():
        return [path]
    files = [path / "pairs.jsonl"] if (path / "pairs.jsonl").is_file() else []
    files = files or sorted(path.glob("round_*/pairs.jsonl"), key=lambda f: int(f.parent.name.split("_")[-1]))
    if not files:
        raise FileNotFoundError(f"{path}: no pairs.jsonl, nor round_*/pairs.jsonl (an online run's folder)")
    return files


def write_pairs_sheet(path: Path, n: int, seed: int = 0) -> Path:
    """blind.md with `n` pairs drawn (seeded) from the pairs files under `path`, chosen and rejected in a seeded
    random order; blind_key.json records the side of each chosen answer and where each pair came from."""
    rows = [(f, i, pair) for f in pairs_files(path) for i, pair in enumerate(read_pairs(f))]
    rng = random.Random(seed)
    drawn = rng.sample(rows, min(n, len(rows)))
    swaps = [rng.random() < 0.5 for _ in drawn]
    key, parts = [], []
    for number, ((_, _, pair), swap) in enumerate(zip(drawn, swaps)):
        chosen, rejected = as_text(pair.chosen), as_text(pair.rejected)
        a, b = (rejected, chosen) if swap else (chosen, rejected)
        key.append("B" if swap else "A")
        parts.append(f"## {number}\nQ: {prompt_text(pair.prompt)}\n\nA: {a}\n\nB: {b}\n")
    folder = sheet_folder(path)
    sheet = folder / SHEET_FILE
    head = f"# Blind reading: {len(drawn)} pairs. Verdicts: A, B or T (neither better), one per pair, in order.\n\n"
    sheet.write_text(head + "\n".join(parts))
    sources = [f"{f.relative_to(folder) if f.is_relative_to(folder) else f}:{i + 1}" for f, i, _ in drawn]
    (folder / KEY_FILE).write_text(json.dumps({"first": "chosen", "second": "rejected", "first_is": key,
                                               "pairs": sources}))  # fmt: skip
    return sheet


def drawn_pairs(folder: Path, sources: list[str]) -> list[RoundPair]:
    """The pairs a sheet drew, from blind_key.json's `pairs` (`<file>:<row>`, the file relative to `folder`)."""
    files: dict[str, list[RoundPair]] = {}
    rows = []
    for source in sources:
        name, row = source.rsplit(":", 1)
        rows.append(files.setdefault(name, read_pairs(folder / name))[int(row) - 1])
    return rows


def sheet_folder(path: Path) -> Path:
    """Where a sheet of `path`'s pairs and its key are written: the folder, or a pairs file's own folder."""
    return path.parent if path.is_file() else path


def judge_outcomes(eval_dir: Path, first: str, second: str) -> list[float] | None:
    """The evaluation's judge's verdict on each prompt of the sheet (1 first better, 0 worse, 0.5 tie), where it was
    recorded: generations.jsonl's `verdict_<model>_over_<model>_<kind>` for two fields of one evaluation, or the
    outcomes in head_to_head.json for a sheet against another evaluation (the same one, on the same field)."""
    if ":" in second:  # `<other eval>:<field>`: a sheet --against another evaluation
        other, field = second.rsplit(":", 1)
        path = eval_dir / HEAD_TO_HEAD
        if not path.is_file():
            return None
        result = json.loads(path.read_text())
        same = result.get("field") == field and Path(str(result.get("second"))).resolve() == Path(other).resolve()
        return result.get("outcomes") if same else None
    (model, _, kind), (other_model, _, other_kind) = first.rpartition("_"), second.rpartition("_")
    name = f"verdict_{model}_over_reference" if second == "reference" else f"verdict_{model}_over_{other_model}_{kind}"
    rows = read_generations(eval_dir)
    if (second != "reference" and kind != other_kind) or not all(name in row for row in rows):
        return None
    return [float(row[name]) for row in rows]


def agreement(verdicts: list[str], first_is: list[str], outcomes: list[float], confidence: float = 0.95) -> dict:
    """How often a judge's per-prompt verdicts agree with a reader's, over the prompts both decided (no tie)."""
    decided = [(v == side, o == 1) for v, side, o in zip(verdicts, first_is, outcomes) if v != "T" and o != 0.5]
    agree = sum(reader == judge for reader, judge in decided)
    interval = wilson(agree, len(decided), confidence)
    return {"agree": agree, "decided": len(decided), "rate": interval.value, "ci_low": interval.low,
            "ci_high": interval.high}  # fmt: skip


def score(eval_dir: Path, verdicts_file: Path, confidence: float = 0.95, judge: Any = None) -> dict:
    """The first model's wins/ties/losses against the second by the reader's verdicts, with the Wilson interval;
    and `judge_agreement`, where the evaluation recorded its judge's verdict on each prompt. For a sheet of the
    loop's pairs, `judge_agreement` is the reader's agreement with the loop's judge (which chose every `first`),
    and `judge` (an object with `compare(prompts, first, second)`, e.g. a RewardJudge), when given, scores the same
    pairs: `second_judge` says how often it sides with the loop's judge and how often with the reader."""
    key = json.loads((eval_dir / KEY_FILE).read_text())
    verdicts = verdicts_file.read_text().upper().split()
    if len(verdicts) != len(key["first_is"]) or set(verdicts) - {"A", "B", "T"}:
        raise ValueError(
            f"{verdicts_file}: expected {len(key['first_is'])} verdicts of A, B or T; got {len(verdicts)}"
            f" ({sorted(set(verdicts) - {'A', 'B', 'T'}) or 'all valid'})"
        )
    wins = sum(v == side for v, side in zip(verdicts, key["first_is"]))
    ties = verdicts.count("T")
    losses = len(verdicts) - wins - ties
    interval = wilson(wins + ties / 2, len(verdicts), confidence)
    result = {"first": key["first"], "second": key["second"], "wins": wins, "ties": ties, "losses": losses,
              "win_rate": interval.value, "ci_low": interval.low, "ci_high": interval.high}  # fmt: skip
    if "pairs" in key:  # a sheet of the loop's pairs: the loop's judge chose `first` every time
        result["judge_agreement"] = agreement(verdicts, key["first_is"], [1.0] * len(verdicts), confidence)
        if judge is not None:  # another judge on the same pairs: does it side with the loop's judge, the reader?
            pairs = drawn_pairs(eval_dir, key["pairs"])
            answers = ([as_text(getattr(pair, side)) for pair in pairs] for side in ("chosen", "rejected"))
            outcomes = [float(o) for o in judge.compare([pair.prompt for pair in pairs], *answers).outcomes]
            result["second_judge"] = {"name": str(getattr(judge, "name", judge)),
                                      "same_as_loop": sum(o == 1 for o in outcomes), "ties": outcomes.count(0.5),
                                      "pairs": len(outcomes),
                                      "reader": agreement(verdicts, key["first_is"], outcomes, confidence)}  # fmt: skip
        return result
    outcomes = judge_outcomes(eval_dir, key["first"], key["second"])
    if outcomes is not None and len(outcomes) == len(verdicts):
        result["judge_agreement"] = agreement(verdicts, key["first_is"], outcomes, confidence)
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "eval_dir",
        type=Path,
        help="an evaluation's output folder (holding generations.jsonl); with "
        "--pairs, an online run's folder, a round's, or a pairs.jsonl",
    )
    p.add_argument("--first", default="dpo_greedy", help="generations.jsonl field of the model scored")
    p.add_argument("--second", default="base_greedy", help="... and of the model it is compared with")
    p.add_argument("--against", type=Path, help="another evaluation on the same prompts: its --first answers are B's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference", action="store_true", help="show the held-out reference answer with each prompt")
    p.add_argument("--pairs", type=int, metavar="N", help="a sheet of N of the loop's pairs (chosen vs rejected)")
    p.add_argument(
        "--judge",
        help="with --score of a pairs sheet: another judge of the same pairs, set beside the loop's judge and the "
        "reader: a reward model (folder or hub id), or llm:<model> for the LLM judge",
    )
    p.add_argument("--score", type=Path, help="a file of verdicts (A/B/T per prompt) to score against the key")
    args = p.parse_args(argv)
    if args.score:
        folder = sheet_folder(args.eval_dir)
        judge = None
        if args.judge and args.judge.startswith("llm:"):  # an LLM judge: llm:<hub id, folder or embedded:...>
            judge = LLMJudge(args.judge.removeprefix("llm:"))
        elif args.judge:
            judge = RewardJudge(args.judge)
        r = score(folder, args.score, judge=judge)
        a = r.get("judge_agreement")
        if r["first"] == "chosen" and a:
            print(f"the reader prefers the loop's judge's chosen answer on {a['agree']} of the {a['decided']} pairs "
                  f"decided: {a['rate']:.2f} [{a['ci_low']:.2f}, {a['ci_high']:.2f}] (chance: 0.50; hand-written "
                  f"pairs: 1); neither better on {r['ties']}")  # fmt: skip
            if "second_judge" in r:
                j, b = r["second_judge"], r["second_judge"]["reader"]
                with_reader = (
                    f"the reader's on {b['agree']} of the {b['decided']} both decided: {b['rate']:.2f} "
                    f"[{b['ci_low']:.2f}, {b['ci_high']:.2f}]"
                    if b["decided"]
                    else "no pair both decided"
                )
                print(f"{j['name']} prefers the same answer as the loop's judge on {j['same_as_loop']} of "
                      f"{j['pairs']} pairs (ties {j['ties']}), and {with_reader}")  # fmt: skip
            return
        print(f"{r['first']} over {r['second']}: {r['wins']}/{r['ties']}/{r['losses']} (W/T/L), "
              f"win rate {r['win_rate']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]")  # fmt: skip
        if "judge_agreement" in r:
            a = r["judge_agreement"]
            print(f"the judge's verdicts agree with the reader's on {a['agree']} of the {a['decided']} prompts both "
                  f"decided: {a['rate']:.2f} [{a['ci_low']:.2f}, {a['ci_high']:.2f}] (chance: 0.50)")  # fmt: skip
    elif args.pairs:
        print(write_pairs_sheet(args.eval_dir, args.pairs, args.seed))
    else:
        print(write_sheet(args.eval_dir, args.first, args.second, args.seed, args.reference, args.against))


if __name__ == "__main__":
    main()
