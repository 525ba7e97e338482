"""The built-in word problems (`data=arithmetic`, path `builtin:arithmetic`): seeded, one- and two-step (a
quarter), with +, -, x and / on small whole numbers, each with its worked answer, so the verifiable-rewards jobs run
on a fresh machine with no download.

Every operation has several phrasings and the splits share none: `train` draws from the training phrasings, `test`
(held out, never trained on) from the others, with its own seed. A model that learned the training wording learned
a template; the held-out accuracy is measured on problems worded differently, so it measures the arithmetic. Names
and objects vary in both. A row is GSM8K-shaped: `question` and `answer` (the worked solution, ending "The answer is
N."), plus `operation`, `steps` and `template` (the phrasing, e.g. `add.3`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from ..core import seeds

NAMES = (
    "Sara", "Omar", "Lena", "Ravi", "Mia", "Tom", "Aisha", "Jonas", "Yuki", "Carlos", "Priya", "Ben", "Fatima",
    "Leo", "Nora", "Kwame", "Ines", "Hugo", "Mei", "Sam", "Zara", "Pablo", "Elif", "Noah", "Amara", "Ivan",
    "Chloe", "Diego", "Hana", "Felix",
)  # fmt: skip
OBJECTS = (
    "apples", "marbles", "stickers", "books", "pencils", "cookies", "shells", "stamps", "coins", "cards",
    "balloons", "crayons", "buttons", "eggs", "flowers", "toy cars", "beads", "plums", "candles", "rocks",
)  # fmt: skip
CONTAINERS = ("bags", "boxes", "jars", "baskets", "packs", "crates")

# operation -> phrasings (question, worked step); {n} a name, {o} objects, {c} containers, {a} {b} {d} the numbers,
# {s} the first step's result, {r} the answer. The last phrasing(s) of each operation are the held-out split's.
PHRASINGS: dict[str, tuple[tuple[str, str], ...]] = {
    "add": (
        ("{n} has {a} {o} and gets {b} more. How many {o} does {n} have now?", "{a} + {b} = {r}"),
        (
            "There are {a} {o} on a table. {n} puts {b} more {o} on it. How many {o} are on the table?",
            "{a} + {b} = {r}",
        ),
        (
            "{n} picked {a} {o} in the morning and {b} in the afternoon. How many {o} did {n} pick in all?",
            "{a} + {b} = {r}",
        ),
        ("A shelf holds {a} {o}. After {b} more {o} are added, how many {o} does it hold?", "{a} + {b} = {r}"),
        ("What is the total number of {o} if {n} owns {a} and a friend gives {n} {b} more?", "{a} + {b} = {r}"),
    ),
    "subtract": (
        ("{n} has {a} {o} and gives away {b}. How many {o} does {n} have left?", "{a} - {b} = {r}"),
        (
            "There were {a} {o} in a box. {n} took {b} of them out. How many {o} are still in the box?",
            "{a} - {b} = {r}",
        ),
        ("{n} needs {a} {o} and already has {b}. How many more {o} does {n} need?", "{a} - {b} = {r}"),
        ("A store had {a} {o} and sold {b} of them. How many {o} remain?", "{a} - {b} = {r}"),
        ("How many {o} are left if {n} starts with {a} and loses {b}?", "{a} - {b} = {r}"),
    ),
    "multiply": (
        ("{n} has {a} {c} with {b} {o} in each. How many {o} does {n} have?", "{a} × {b} = {r}"),
        ("Each of {a} friends brings {b} {o}. How many {o} do they bring altogether?", "{a} × {b} = {r}"),
        ("{n} buys {b} {o} every day for {a} days. How many {o} does {n} buy?", "{a} × {b} = {r}"),
        ("There are {a} rows of {o} with {b} in every row. How many {o} are there?", "{a} × {b} = {r}"),
        ("What is the number of {o} in {a} {c} if each one holds {b}?", "{a} × {b} = {r}"),
    ),
    "divide": (
        ("{n} shares {a} {o} equally among {b} friends. How many {o} does each friend get?", "{a} ÷ {b} = {r}"),
        ("{n} packs {a} {o} into {c} of {b}. How many {c} does {n} fill?", "{a} ÷ {b} = {r}"),
        ("{n} splits {a} {o} into {b} equal groups. How many {o} are in each group?", "{a} ÷ {b} = {r}"),
        ("{b} {c} hold {a} {o} in total, the same number in each. How many {o} are in one of them?", "{a} ÷ {b} = {r}"),
        ("How many {o} does each of {b} children get when {a} {o} are divided evenly?", "{a} ÷ {b} = {r}"),
    ),
    "add,subtract": (
        (
            "{n} has {a} {o}, finds {b} more and then gives {d} away. How many {o} does {n} have?",
            "{a} + {b} = {s}. {s} - {d} = {r}",
        ),
        (
            "A jar holds {a} {o}. {n} adds {b}, then eats {d}. How many {o} are in the jar?",
            "{a} + {b} = {s}. {s} - {d} = {r}",
        ),
        (
            "After getting {b} {o} and losing {d}, how many {o} does {n} have if {n} started with {a}?",
            "{a} + {b} = {s}. {s} - {d} = {r}",
        ),
    ),
    "multiply,add": (
        (
            "{n} buys {a} {c} of {o} with {b} in each and already had {d}. How many {o} does {n} have now?",
            "{a} × {b} = {s}. {s} + {d} = {r}",
        ),
        (
            "There are {a} {c} with {b} {o} each, and {d} loose {o}. How many {o} are there in all?",
            "{a} × {b} = {s}. {s} + {d} = {r}",
        ),
        (
            "What is the total if {n} has {d} {o} and receives {a} {c} holding {b} {o} apiece?",
            "{a} × {b} = {s}. {s} + {d} = {r}",
        ),
    ),
    "multiply,subtract": (
        (
            "{n} has {a} {c} with {b} {o} in each and gives {d} {o} away. How many {o} are left?",
            "{a} × {b} = {s}. {s} - {d} = {r}",
        ),
        (
            "A farm packs {a} {c} of {b} {o}; {d} {o} are damaged. How many {o} are not damaged?",
            "{a} × {b} = {s}. {s} - {d} = {r}",
        ),
        ("How many {o} remain when {d} are used from {a} {c} that hold {b} each?", "{a} × {b} = {s}. {s} - {d} = {r}"),
    ),
    "divide,add": (
        (
            "{n} splits {a} {o} equally into {b} {c}, then adds {d} more {o} to one of them. How many {o} are in "
            "that one?",
            "{a} ÷ {b} = {s}. {s} + {d} = {r}",
        ),
        (
            "{a} {o} are shared evenly by {b} friends, and one friend also gets {d} extra. How many {o} does that "
            "friend have?",
            "{a} ÷ {b} = {s}. {s} + {d} = {r}",
        ),
        (
            "One of {b} equal groups made from {a} {o} gets {d} more. How many {o} are in it now?",
            "{a} ÷ {b} = {s}. {s} + {d} = {r}",
        ),
    ),
}
HELD_OUT = {"add": 2, "subtract": 2, "multiply": 2, "divide": 2}  # phrasings kept for the test split (two-step: 1)
SPLIT_SEEDS = {"train": 0, "test": 1}
TWO_STEP_SHARE = 0.25


def phrasings(operation: str, split: str) -> list[int]:
    """The indices of `operation`'s phrasings that `split` draws from (train: the first ones, test: the rest)."""
    count = len(PHRASINGS[operation])
    held = HELD_OUT.get(operation, 1)
    return list(range(count - held)) if split == "train" else list(range(count - held, count))


def _numbers(rng: random.Random, operation: str) -> dict[str, int]:
    """Small whole numbers (sums of two numbers up to 20, products and quotients of numbers up to 9): problems a
    135M model gets right some of the time, so that sampled answers differ in correctness."""
    first = operation.split(",")[0]
    if first == "add":
        a, b = rng.randint(2, 20), rng.randint(2, 20)
        s = a + b
    elif first == "subtract":
        b = rng.randint(2, 20)
        a = b + rng.randint(1, 20)
        s = a - b
    elif first == "multiply":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        s = a * b
    else:  # divide: whole results
        b, s = rng.randint(2, 9), rng.randint(2, 9)
        a = b * s
    out = {"a": a, "b": b, "s": s, "r": s}
    if "," in operation:
        second = operation.split(",")[1]
        d = rng.randint(1, s - 1) if second == "subtract" else rng.randint(2, 15)
        out.update(d=d, r=s - d if second == "subtract" else s + d)
    return out


def problem(rng: random.Random, split: str) -> dict[str, Any]:
    two_step = rng.random() < TWO_STEP_SHARE
    operations = [op for op in PHRASINGS if ("," in op) == two_step]
    operation = rng.choice(operations)
    index = rng.choice(phrasings(operation, split))
    question, work = PHRASINGS[operation][index]
    values = {"n": rng.choice(NAMES), "o": rng.choice(OBJECTS), "c": rng.choice(CONTAINERS), **_numbers(rng, operation)}
    return {
        "question": question.format(**values),
        "answer": f"{work.format(**values)}. The answer is {values['r']}.",
        "operation": operation,
        "steps": 2 if two_step else 1,
        "template": f"{operation}.{index}",
    }


def arithmetic_problems(split: str = "train", count: int | None = None, seed: int = 0) -> Iterator[dict[str, Any]]:
    """`count` problems of `split` (train: 2000, test: 500 by default), the same ones for the same seed; a problem
    text appears at most once per split."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"builtin:arithmetic has the splits {sorted(SPLIT_SEEDS)}, not {split!r}")
    count = count if count is not None else (2000 if split == "train" else 500)
    rng = random.Random(seeds.problem_split(seed, SPLIT_SEEDS[split]))
    seen: set[str] = set()
    while len(seen) < count:
        row = problem(rng, split)
        if row["question"] not in seen:
            seen.add(row["question"])
            yield row
