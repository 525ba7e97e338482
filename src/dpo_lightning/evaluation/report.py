"""The evaluation report: PNG plots, report.md and a self-contained report.html (plots inlined)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import torch

from ..core.credentials import wandb_configured
from ..core.tables import markdown_table
from .result import EvaluationResult
from .rows import logged_scalars, summary_table

PLOTS = {
    "margins.png": "Implicit reward margins of the DPO policy on held-out pairs",
    "logratios.png": "Per-pair log-ratios log(pi/pi_base): chosen vs rejected",
    "accuracy.png": "Held-out preference accuracy, base vs DPO",
}


def make_plots(out: Path, rewards: dict[str, torch.Tensor], metrics: dict[str, Any], beta: float) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"axes.titlesize": 10, "axes.labelsize": 9})
    paths = []
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.hist(rewards["margins"].numpy(), bins=30, color="#3b7dd8")
    ax.axvline(0, color="black", lw=1)
    ax.set(
        xlabel="beta * [(log pi/pi_base)(chosen) - (log pi/pi_base)(rejected)]",
        ylabel="pairs",
        title=PLOTS["margins.png"],
    )
    paths.append(_save(fig, out / "margins.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    x, y = (rewards["chosen"] / beta).numpy(), (rewards["rejected"] / beta).numpy()
    ax.scatter(x, y, s=12, alpha=0.7, color="#d8573b")
    lim = [min(x.min(), y.min()), max(x.max(), y.max())]
    ax.plot(lim, lim, color="gray", lw=1, ls="--")
    ax.set(
        xlabel="chosen: log pi(y_w|x) - log pi_base(y_w|x)",
        ylabel="rejected: log pi(y_l|x) - log pi_base(y_l|x)",
        title=PLOTS["logratios.png"],
    )
    paths.append(_save(fig, out / "logratios.png"))

    fig, ax = plt.subplots(figsize=(6, 3.6))
    kinds = ["preference_accuracy", "preference_accuracy_normalized"]
    labels = ["summed log-prob", "per-token log-prob"]
    for offset, model, color in ((-0.2, "base", "#999999"), (0.2, "dpo", "#3b7dd8")):
        values = [metrics[model][k] for k in kinds]
        bars = ax.bar([i + offset for i in range(len(kinds))], values, width=0.4, label=model, color=color)
        ax.bar_label(bars, fmt="%.2f")
    ax.set_xticks(range(len(kinds)), labels)
    ax.set(ylim=(0, 1.1), ylabel="fraction of pairs", title=PLOTS["accuracy.png"])
    ax.legend()
    paths.append(_save(fig, out / "accuracy.png"))
    if metrics.get("judge"):
        paths.append(judge_plot(out / "judge.png", metrics["judge"]))
    return paths


JUDGE_PLOT = "Judged win rates (DPO over base; each model against the reference answers) and mean judge rewards"


def judge_plot(path: Path, judge: dict[str, Any]) -> Path:
    import matplotlib.pyplot as plt

    scored = "reward_dpo" in judge["greedy"]
    fig, axes = plt.subplots(1, 2 if scored else 1, figsize=(10 if scored else 6, 3.8), squeeze=False)
    left = axes[0][0]
    bars = {
        "DPO > base\ngreedy": judge["greedy"],
        "DPO > base\nsampled": judge["sampled"],
        "DPO > ref.\ngreedy": judge["reference"]["dpo"],
        "base > ref.\ngreedy": judge["reference"]["base"],
    }
    rates = [w["win_rate"] for w in bars.values()]
    errors = [
        [r - w["ci_low"] for r, w in zip(rates, bars.values())],
        [w["ci_high"] - r for r, w in zip(rates, bars.values())],
    ]
    drawn = left.bar(list(bars), rates, yerr=errors, capsize=6, color=["#3b7dd8", "#3b7dd8", "#d8573b", "#999999"])
    left.bar_label(drawn, fmt="%.2f", padding=8)
    left.axhline(0.5, color="black", lw=1, ls="--")
    left.set(ylim=(0, 1.1), ylabel="win rate (tie = half)", title="win rates (Wilson interval)")
    if scored:
        right = axes[0][1]
        stats = {
            "base": judge["greedy"]["reward_base"],
            "DPO": judge["greedy"]["reward_dpo"],
            "reference": judge["reference"]["dpo"]["reward_reference"],
        }
        values = [st["value"] for st in stats.values()]
        err = [
            [v - st["ci_low"] for v, st in zip(values, stats.values())],
            [st["ci_high"] - v for v, st in zip(values, stats.values())],
        ]
        right.bar(list(stats), values, yerr=err, capsize=5, color=["#999999", "#3b7dd8", "#d8573b"])
        right.set(ylabel="mean judge reward, greedy answers", title="mean reward (BCa interval)")
    fig.suptitle(JUDGE_PLOT, fontsize=10)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def _ci(d: dict[str, float]) -> str:
    return f"{d['value']:.4f} [{d['ci_low']:.4f}, {d['ci_high']:.4f}]"


def intervals_note(result: EvaluationResult) -> str:
    level = int(result.confidence * 100)
    return (
        f"Intervals are {level}%: {result.intervals['proportions']} for proportions (accuracies, win rates, shares; "
        f"a tie counts half a win), {result.intervals['means']} for means; the jackknife for distinct-n."
    )


def tables(result: EvaluationResult) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for every table of the report; markdown and HTML render the same tables. The first is
    the summary (every figure, base / DPO / reference answers); the others detail the implicit reward and the judge."""
    header, cells = summary_table(result.rows())
    out = [("Summary: base, DPO and the held-out reference answers", header, cells)]
    r = result.implicit_reward
    out.append(
        (
            f"Implicit reward of DPO against the base (beta = {result.beta})",
            ["statistic", "value [CI]"],
            [
                ["accuracy (margin > 0)", _ci(r["accuracy"])],
                ["mean margin", _ci(r["margin"])],
                ["mean chosen reward", _ci(r["chosen"])],
                ["mean rejected reward", _ci(r["rejected"])],
            ]
            + [[f"margin {k}", _fmt(v)] for k, v in r["margin_quantiles"].items()]
            + [[f"KL(DPO || base) {k.replace('kl_', '').replace('_', ' ')}", _fmt(v)] for k, v in result.kl.items()],
        )
    )
    judge = result.judge
    if judge:
        rows = []
        comparisons = [("DPO vs base", judge[k], k, "dpo", "base") for k in ("greedy", "sampled", "temperature_1")]
        comparisons += [
            (f"{m} vs reference answers", judge["reference"][m], "greedy", m, "reference") for m in ("dpo", "base")
        ]
        for title, w, kind, first, second in comparisons:
            rewards = [_ci(w[f"reward_{n}"]) if f"reward_{n}" in w else "-" for n in (first, second)]
            rows.append(
                [
                    title,
                    kind,
                    f"{w['wins']} / {w['ties']} / {w['losses']}",
                    _ci({"value": w["win_rate"], **w}),
                    *rewards,
                ]
            )
        trained = f"; trained on {judge['trained_on']}" if judge.get("trained_on") else ""
        out.append(
            (
                f"Judged answers ({judge['kind']}: {judge['model']}{trained})",
                ["comparison", "answers", "wins / ties / losses", "win rate [CI]", "first's mean reward", "second's"],
                rows,
            )
        )
    return out


def plots(result: EvaluationResult) -> dict[str, str]:
    return {**PLOTS, **({"judge.png": JUDGE_PLOT} if result.judge else {})}


def write_markdown(path: Path, result: EvaluationResult, generations: list[dict[str, Any]], n_show: int = 4) -> None:
    lines = [
        f"# DPO evaluation: {result.run_dir}",
        "",
        f"{result.pairs} held-out pairs from `{result.data}`. {intervals_note(result)}",
        "",
    ]
    warnings = result.warnings()
    lines += ["## Warnings", ""] + ([f"- ⚠ {w}" for w in warnings] or ["None raised."]) + [""]
    for title, header, rows in tables(result):
        lines += [f"## {title}", "", *markdown_table(header, rows), ""]
    if not result.judge:
        lines += [
            "## Judge win rate",
            "",
            "No judge configured (`judge=auto`, `judge=reward judge.model=...`, `judge=llm`).",
            "",
        ]
    lines += ["## Plots", ""] + [f"![{t}]({name})" for name, t in plots(result).items()] + [""]
    lines += ["## Answers (greedy)", ""]
    for g in generations[:n_show]:
        lines += [
            f"**Prompt:** {g['prompt']}",
            "",
            f"- reference: {g['reference']}",
            f"- base: {g['base_greedy']}",
            f"- DPO: {g['dpo_greedy']}",
            "",
        ]
    lines.append(
        f"All {len(generations)} prompts, greedy and sampled, with the judge's verdicts, are in generations.jsonl."
    )
    path.write_text("\n".join(lines) + "\n")


def write_html(path: Path, result: EvaluationResult, generations: list[dict[str, Any]], plot_dir: Path) -> None:
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>DPO evaluation</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}"
        ".warn{background:#fff3cd;padding:.5em 1em;border:1px solid #e0c060}"
        "td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}th{background:#f2f2f2}"
        ".gen td{vertical-align:top;width:25%}</style></head><body>",
        f"<h1>DPO evaluation</h1><p>Run <code>{esc(result.run_dir)}</code>: {result.pairs} held-out pairs from "
        f"<code>{esc(str(result.data))}</code>. {esc(intervals_note(result))}</p>",
    ]
    warnings = result.warnings()
    parts.append(
        "<h2>Warnings</h2>" + ("".join(f"<p class='warn'>⚠ {esc(w)}</p>" for w in warnings) or "<p>None raised.</p>")
    )
    for title, header, rows in tables(result):
        parts.append(f"<h2>{esc(title)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    if not result.judge:
        parts.append(
            "<h2>Judge win rate</h2><p>No judge configured (<code>judge=auto</code>, <code>judge=reward</code>, "
            "<code>judge=llm</code>).</p>"
        )
    parts.append("<h2>Plots</h2>")
    for name, title in plots(result).items():
        data = base64.b64encode((plot_dir / name).read_bytes()).decode()
        image = f"<img alt='{esc(title)}' src='data:image/png;base64,{data}'>"
        parts.append(f"<figure>{image}<figcaption>{esc(title)}</figcaption></figure>")
    parts.append(
        "<h2>Answers</h2><table class='gen'><tr><th>prompt</th><th>reference answer</th>"
        "<th>base (greedy / sampled)</th><th>DPO (greedy / sampled)</th></tr>"
    )
    for g in generations:
        parts.append(
            f"<tr><td>{esc(g['prompt'])}</td><td>{esc(g['reference'])}</td>"
            f"<td>{esc(g['base_greedy'])}<hr>{esc(g['base_sampled'])}</td>"
            f"<td>{esc(g['dpo_greedy'])}<hr>{esc(g['dpo_sampled'])}</td></tr>"
        )
    parts.append("</table></body></html>")
    path.write_text("\n".join(parts))


def log_to_wandb(cfg: Any, out: Path, result: EvaluationResult, generations: list[dict[str, Any]]) -> None:
    """The summary figures as test/<figure>/<column> scalars, the warnings, the answers and the plots, to W&B."""
    import wandb

    run = wandb.init(
        project=cfg.wandb_project,
        dir=str(out),
        job_type="eval",
        mode="online" if wandb_configured() else "offline",
        config={"run_dir": result.run_dir},
    )
    run.log(logged_scalars(result.rows()))
    columns = list(generations[0]) if generations else []
    run.log(
        {
            "test/generations": wandb.Table(columns=columns, data=[[g[c] for c in columns] for g in generations]),
            "test/warnings_text": wandb.Table(columns=["warning"], data=[[w] for w in result.warnings()]),
            **{f"test/plots/{p.stem}": wandb.Image(str(p)) for p in sorted(out.glob("*.png"))},
        }
    )
    run.finish()
