"""Peak memory of reading a large preference file: streamed (data.streaming=true) against loaded in memory.

    python bench/streaming_memory.py                      # 1M synthetic pairs (about 0.4 GB of JSON lines)
    python bench/streaming_memory.py --pairs 100000 --in-memory-pairs 100000

Writes a synthetic .jsonl file of --pairs rows (HH-like lengths: a 60-word prompt, 40-word responses), then in a
child process per mode runs the whole data pipeline (read, parse, tokenize with the SmolLM2 tokenizer, pack,
collate) and samples the process's resident memory (RSS) every --every pairs:
- streaming: one full pass over all --pairs pairs through `StreamingLoader` (shuffle_buffer 10,000);
- in memory: `setup()` of the same data module without streaming over the first --in-memory-pairs rows, then one
  pass of its loader.
Prints a table of RSS against pairs read, and writes it to --out (markdown and JSON).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

WORDS = "the a of to and in that is for it with as was on be at by this have from or had not but what all".split()


def synthetic_file(path: Path, pairs: int, seed: int = 0) -> Path:
    if path.is_file() and sum(1 for _ in path.open()) == pairs:
        return path
    rng = random.Random(seed)
    with path.open("w") as f:
        for i in range(pairs):
            prompt = " ".join(rng.choices(WORDS, k=60))
            row = {
                "prompt": f"Question {i}: {prompt}?",
                "chosen": " ".join(rng.choices(WORDS, k=40)),
                "rejected": " ".join(rng.choices(WORDS, k=40)),
            }
            f.write(json.dumps(row) + "\n")
    return path


def rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def child(mode: str, path: str, pairs: int, every: int, val: str) -> None:
    from dpo_lightning.data import PreferenceFormat, preference_data
    from dpo_lightning.models import build_tiny_llama

    tokenizer = build_tiny_llama().tokenizer
    streaming = mode == "streaming"
    dm = preference_data(
        PreferenceFormat(),
        path,
        tokenizer,
        val_path=val,
        streaming=streaming,
        max_train_pairs=None if streaming else pairs,
        batch_size=8,
    )
    samples, start = [(0, rss_gib())], time.perf_counter()
    dm.setup()
    if not streaming:
        samples.append((pairs, rss_gib()))  # everything read and tokenized
    seen = 0
    for batch in dm.train_dataloader():
        seen += int(batch.pair_keys.numel())
        if seen % every < 8:
            samples.append((seen, rss_gib()))
        if seen >= pairs:
            break
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        json.dumps(
            {"mode": mode, "pairs": pairs, "samples": samples, "peak_gib": peak, "seconds": time.perf_counter() - start}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--in-memory-pairs", type=int, default=200_000)
    parser.add_argument("--every", type=int, default=50_000)
    parser.add_argument("--work", default=".cache/bench_streaming")
    parser.add_argument("--out", default="bench/results/streaming_memory")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, path, pairs, every, val = args.child
        child(mode, path, int(pairs), int(every), val)
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = synthetic_file(work / f"pairs_{args.pairs}.jsonl", args.pairs)
    val = synthetic_file(work / "val.jsonl", 16, seed=1)
    results = []
    for mode, n in (("streaming", args.pairs), ("in_memory", args.in_memory_pairs)):
        cmd = [sys.executable, __file__, "--child", mode, str(data), str(n), str(args.every), str(val)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        results.append(json.loads(out))
        print(f"{mode}: {n:,} pairs, peak RSS {results[-1]['peak_gib']:.2f} GiB, {results[-1]['seconds']:.0f} s")
    command = "python bench/streaming_memory.py " + " ".join(sys.argv[1:])
    lines = [
        "# Peak memory: a large preference file streamed against loaded in memory",
        "",
        f"Command: `{command.strip()}` ({time.strftime('%Y-%m-%d')}, {Path(data).stat().st_size / 2**30:.2f} GiB file)",
        "",
        "| mode | pairs | peak RSS (GiB) | seconds | RSS (GiB) at pairs read |",
        "|---|---:|---:|---:|---|",
    ]
    for r in results:
        trace = ", ".join(f"{n // 1000}k: {g:.2f}" for n, g in r["samples"])
        lines.append(f"| {r['mode']} | {r['pairs']:,} | {r['peak_gib']:.2f} | {r['seconds']:.0f} | {trace} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps({"command": command, "results": results}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
