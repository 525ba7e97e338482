"""The evaluation report: PNG plots, report.md and a self-contained report.html (plots inlined)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import torch

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
    return paths


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


def tables(metrics: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for every table of the report; markdown and HTML render the same tables."""
    base, dpo = metrics["base"], metrics["dpo"]
    out = [
        (
            "Base vs DPO on the held-out pairs",
            ["metric", "base", "DPO"],
            [
                [k, _fmt(base[k]), _fmt(dpo[k])]
                for k in (
                    "preference_accuracy",
                    "preference_accuracy_normalized",
                    "mean_logp_chosen",
                    "mean_logp_rejected",
                    "mean_response_tokens_greedy",
                    "mean_response_tokens_sampled",
                )
            ],
        )
    ]
    r = metrics["implicit_reward"]
    level = int(metrics["confidence"] * 100)
    out.append(
        (
            f"Implicit reward of DPO against the base (beta = {metrics['beta']}; {level}% bootstrap CI)",
            ["statistic", "value [CI]"],
            [
                ["accuracy (margin > 0)", _ci(r["accuracy"])],
                ["mean margin", _ci(r["margin"])],
                ["mean chosen reward", _ci(r["chosen"])],
                ["mean rejected reward", _ci(r["rejected"])],
            ]
            + [[f"margin {k}", _fmt(v)] for k, v in r["margin_quantiles"].items()],
        )
    )
    kl = metrics["kl"]
    out.append(
        (
            "KL(DPO || base) from the DPO policy's own samples (temperature 1)",
            ["statistic", "value"],
            [
                ["per sequence", _fmt(kl["kl_per_sequence"])],
                ["per token", _fmt(kl["kl_per_token"])],
                ["samples", str(kl["samples"])],
            ],
        )
    )
    judge = metrics.get("judge")
    if judge:
        out.append(
            (
                f"Judge win rate of DPO against base ({judge['model']}, greedy generations)",
                ["statistic", "value"],
                [
                    [k, _fmt(judge[k])]
                    for k in (
                        "wins",
                        "ties",
                        "losses",
                        "win_rate",
                        "ci_low",
                        "ci_high",
                        "mean_score_policy",
                        "mean_score_base",
                    )
                ],
            )
        )
    return out


def write_markdown(path: Path, metrics: dict[str, Any], generations: list[dict[str, Any]], n_show: int = 4) -> None:
    lines = [
        f"# DPO evaluation: {metrics['run_dir']}",
        "",
        f"{metrics['pairs']} held-out pairs from `{metrics['data']}`.",
        "",
    ]
    for title, header, rows in tables(metrics):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows] + [""]
    if not metrics.get("judge"):
        lines += ["## Judge win rate", "", "No judge configured (`judge=<hub id or local dir>` of a reward model).", ""]
    lines += ["## Plots", ""] + [f"![{t}]({name})" for name, t in PLOTS.items()] + [""]
    lines += ["## Generations (greedy)", ""]
    for g in generations[:n_show]:
        lines += [f"**Prompt:** {g['prompt']}", "", f"- base: {g['base_greedy']}", f"- DPO: {g['dpo_greedy']}", ""]
    lines.append(f"All {len(generations)} prompts, greedy and sampled, are in generations.jsonl.")
    path.write_text("\n".join(lines) + "\n")


def write_html(path: Path, metrics: dict[str, Any], generations: list[dict[str, Any]], plot_dir: Path) -> None:
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>DPO evaluation</title><style>"
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}th{background:#f2f2f2}"
        ".gen td{vertical-align:top;width:33%}</style></head><body>",
        f"<h1>DPO evaluation</h1><p>Run <code>{esc(metrics['run_dir'])}</code>: {metrics['pairs']} held-out pairs from "
        f"<code>{esc(str(metrics['data']))}</code>.</p>",
    ]
    for title, header, rows in tables(metrics):
        parts.append(f"<h2>{esc(title)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    if not metrics.get("judge"):
        parts.append(
            "<h2>Judge win rate</h2><p>No judge configured (<code>judge=&lt;hub id or local dir&gt;</code>).</p>"
        )
    parts.append("<h2>Plots</h2>")
    for name, title in PLOTS.items():
        data = base64.b64encode((plot_dir / name).read_bytes()).decode()
        image = f"<img alt='{esc(title)}' src='data:image/png;base64,{data}'>"
        parts.append(f"<figure>{image}<figcaption>{esc(title)}</figcaption></figure>")
    parts.append(
        "<h2>Generations</h2><table class='gen'><tr><th>prompt</th><th>base (greedy / sampled)</th>"
        "<th>DPO (greedy / sampled)</th></tr>"
    )
    for g in generations:
        parts.append(
            f"<tr><td>{esc(g['prompt'])}</td><td>{esc(g['base_greedy'])}<hr>{esc(g['base_sampled'])}</td>"
            f"<td>{esc(g['dpo_greedy'])}<hr>{esc(g['dpo_sampled'])}</td></tr>"
        )
    parts.append("</table></body></html>")
    path.write_text("\n".join(parts))
