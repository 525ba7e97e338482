"""The benchmarks themselves, run small: the TRL side-by-side harness (parity gate, report) and the LM-head check."""

from __future__ import annotations

import json

from conftest import run_script


def test_throughput_harness_side_by_side_with_trl(tmp_path):
    out = tmp_path / "bench"
    run_script(
        "bench/throughput.py",
        "--model",
        "tiny",
        "--data",
        "synthetic",
        "--batch",
        "2",
        "--steps",
        "1",
        "--warmup",
        "1",
        "--max-length",
        "128",
        "--max-prompt-length",
        "64",
        "--rounds",
        "1",
        "--no-warm-round",
        "--out",
        str(out),
        "--variants",
        "ours;ours:precompute_ref=true,checkpointing=true;trl;trl:precompute_ref=true,checkpointing=true",
    )
    saved = json.loads((out / "results.json").read_text())
    parity = saved["parity"]
    # TRL's own loss and log-probs on the same first batch, against ours, and TRL's logged metric against the
    # log-probs recomputed from its model: all within the gate
    assert parity["ok"] and parity["logps_max_rel_diff"] <= 1e-4 and parity["loss_rel_diff"] <= 1e-4, parity
    results = {r["variant"]: r for r in saved["results"]}
    assert list(results) == [
        "ours",
        "ours:precompute_ref=true,checkpointing=true",
        "trl",
        "trl:precompute_ref=true,checkpointing=true",
    ]  # TRL with its precompute_ref_log_probs
    for r in results.values():
        assert "error" not in r, r.get("error")
        assert r["steps_timed"] == 1 and r["seconds_per_step"] > 0 and r["peak_memory_gib"] > 0
    table = (out / "results.md").read_text()
    assert "Parity (fp32, first batch)" in table and ": OK" in table
    assert "memory vs leanest TRL" in table  # several TRL variants: the most demanding comparison is reported too
    assert results["ours:precompute_ref=true,checkpointing=true"]["precompute_ref_pairs"] == 4  # 2 steps of 2 pairs
    assert "the reference pass over all 4 pairs took" in table
    ratio = results["ours"]["pairs_per_second"] / results["trl"]["pairs_per_second"]
    assert f"| {ratio:.2f}x |" in table


def test_head_memory_tiled_equals_plain(tmp_path):
    proc = run_script(
        "bench/head_memory.py", "--rows", "64", "--hidden", "32", "--vocab", "20000", "--dtype", "float32"
    )
    rows = [
        line.split("|")[1:-1]
        for line in proc.stdout.splitlines()
        if line.startswith("| plain") or line.startswith("| tiled")
    ]
    assert [r[0].strip() for r in rows] == ["plain", "tiled"]
    plain, tiled = ([float(x) for x in r[3:]] for r in rows)  # sum of log-probs, grad W norm, grad h norm
    for a, b in zip(plain, tiled):
        assert abs(a - b) <= 1e-4 * abs(a), (plain, tiled)


def test_rounds_are_interleaved_and_reported_by_their_median(monkeypatch):

    from conftest import ROOT

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from rounds import run_rounds, summarize

    calls, timings = [], {"a": [1.0, 1.3, 1.0, 1.0], "b": [2.0, 2.0, 2.0, 2.1, 2.0]}  # b: its warm round first

    def run(variant):
        calls.append(variant)
        name = variant.split(":")[0]
        if variant.endswith("profile=true"):
            return {"variant": variant, "seconds_per_step": 99.0, "peak_memory_gib": 1.0}
        n = sum(1 for c in calls if c == variant) - 1
        return {
            "variant": variant,
            "seconds_per_step": timings[name][n],
            "peak_memory_gib": 1.0 + n,
            "flops_per_step": 4e12,
        }

    done = run_rounds(
        ["a", "b"], run, rounds=3, max_rounds=4, warm_variant=lambda v: v + ":profile=true" if v == "a" else v
    )
    # a warm round first (a profiled), then A B A B A B, and a 4th round because a's spread (30%) is wide
    assert calls == ["a:profile=true", "b", "a", "b", "a", "b", "a", "b", "a", "b"]
    assert [len(v) for v in done.values()] == [4, 4]
    a = summarize("a", done["a"], batch=8, peak_tflops=1.0)
    assert a["seconds_per_step"] == 1.0 and (a["seconds_min"], a["seconds_max"]) == (1.0, 1.3)
    assert abs(a["spread"] - 0.3) < 1e-9 and a["pairs_per_second"] == 8.0 and a["peak_memory_gib"] == 4.0
    assert abs(a["mfu"] - 4.0) < 1e-9  # 4e12 FLOPs per step in the median 1.0 s over a 1 TFLOP/s peak
    b = summarize("b", done["b"][:3] + [{"variant": "b", "error": "OOM"}], batch=8, peak_tflops=1.0)
    assert b["seconds_per_step"] == 2.0 and b["failed_rounds"] == 1
    assert summarize("c", [{"variant": "c", "error": "CUDA out of memory"}], 8, 1.0) == {
        "variant": "c",
        "error": "CUDA out of memory",
    }
    calls.clear()
    timings.update(a=[1.0] * 9, b=[2.0] * 9)
    run_rounds(["a", "b"], run, rounds=3, max_rounds=5, warm=False)
    assert len(calls) == 6  # every spread narrow: exactly the asked rounds
    calls.clear()
    resumed = run_rounds(["a", "b"], run, rounds=3, max_rounds=3, warm=False, earlier={v: done[v][:2] for v in done})
    assert calls == ["a", "b"] and [len(v) for v in resumed.values()] == [3, 3]  # --resume: one more round


def test_host_overhead_proxy_counts_operators_and_syncs_and_checks_parity(tmp_path):
    """bench/host_overhead.py run small: the host-light step dispatches fewer operators than the eager one, with no
    host sync, and gives the eager step's losses and log-probs (1e-5)."""
    out = tmp_path / "host"
    run_script(
        "bench/host_overhead.py",
        "--shape",
        "tiny",
        "--data",
        "synthetic",
        "--batch",
        "2",
        "--max-length",
        "128",
        "--max-prompt-length",
        "64",
        "--warmup",
        "2",
        "--profile-steps",
        "1",
        "--steps",
        "1",
        "--out",
        str(out),
        "--variants",
        "eager;light",
    )
    eager, light = json.loads((out / "results.json").read_text())["results"]
    assert "error" not in light, light.get("error")
    assert eager["host_syncs_per_step"] == 1 and light["host_syncs_per_step"] == 0  # the guard's read, gone
    assert light["operators_per_step"] < eager["operators_per_step"] / 2
    assert light["parity_rel_diff"] <= 1e-5
    assert "| light |" in (out / "results.md").read_text()
