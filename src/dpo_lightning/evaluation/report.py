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
    if metrics.get("judge"):
        paths.append(judge_plot(out / "judge.png", metrics["judge"]))
    return paths


JUDGE_PLOT = "Judged win rate of DPO against base, and each model's mean judge reward"


def judge_plot(path: Path, judge: dict[str, Any]) -> Path:
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    kinds = ["greedy", "sampled"]
    rates = [judge[k]["win_rate"] for k in kinds]
    errors = [[r - judge[k]["ci_low"] for k, r in zip(kinds, rates)]]
    errors.append([judge[k]["ci_high"] - r for k, r in zip(kinds, rates)])
    bars = left.bar(kinds, rates, yerr=errors, capsize=6, color="#3b7dd8")
    left.bar_label(bars, fmt="%.2f", padding=8)
    left.axhline(0.5, color="black", lw=1, ls="--")
    left.set(ylim=(0, 1.05), ylabel="win rate of DPO (tie = half)", title="win rate (Wilson interval)")
    for offset, model, color in ((-0.2, "base", "#999999"), (0.2, "dpo", "#3b7dd8")):
        stats = [judge[k][f"reward_{model}"] for k in kinds]
        values = [st["value"] for st in stats]
        err = [[v - st["ci_low"] for v, st in zip(values, stats)], [st["ci_high"] - v for v, st in zip(values, stats)]]
        right.bar([i + offset for i in range(2)], values, yerr=err, width=0.4, capsize=5, label=model, color=color)
    right.set_xticks(range(2), kinds)
    right.set(ylabel="mean judge reward", title="mean reward (BCa interval)")
    right.legend()
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


def _with_ci(model: dict[str, Any], key: str) -> str:
    ci = model.get(f"{key}_ci")
    return f"{model[key]:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else _fmt(model[key])


def intervals_note(metrics: dict[str, Any]) -> str:
    methods = metrics.get("intervals") or {}
    level = int(metrics["confidence"] * 100)
    return (
        f"Intervals are {level}%: {methods.get('proportions', 'Wilson score interval')} for proportions "
        f"(accuracies, win rates; a tie counts half a win), {methods.get('means', 'BCa bootstrap')} for means."
    )


def tables(metrics: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for every table of the report; markdown and HTML render the same tables."""
    base, dpo = metrics["base"], metrics["dpo"]
    out = [
        (
            "Base vs DPO on the held-out pairs",
            ["metric", "base", "DPO"],
            [
                [k, _with_ci(base, k), _with_ci(dpo, k)]
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
            f"Implicit reward of DPO against the base (beta = {metrics['beta']}; {level}% intervals)",
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
        rows = []
        for kind in ("greedy", "sampled"):
            w = judge[kind]
            rows.append(
                [
                    kind,
                    f"{w['wins']} / {w['ties']} / {w['losses']}",
                    f"{w['win_rate']:.4f} [{w['ci_low']:.4f}, {w['ci_high']:.4f}]",
                    _ci(w["reward_dpo"]),
                    _ci(w["reward_base"]),
                ]
            )
        out.append(
            (
                f"Judged generations: DPO against base ({judge['model']})",
                ["generations", "wins / ties / losses", "win rate [CI]", "DPO mean reward [CI]", "base mean reward"],
                rows,
            )
        )
        acc = judge["accuracy_on_pairs"]
        out.append(
            (
                "How far to trust the judge",
                ["statistic", "value [CI]"],
                [[f"accuracy on the {acc['pairs']} held-out pairs (chosen scored above rejected)", _ci(acc)]],
            )
        )
    return out


def plots(metrics: dict[str, Any]) -> dict[str, str]:
    return {**PLOTS, **({"judge.png": JUDGE_PLOT} if metrics.get("judge") else {})}


def write_markdown(path: Path, metrics: dict[str, Any], generations: list[dict[str, Any]], n_show: int = 4) -> None:
    lines = [
        f"# DPO evaluation: {metrics['run_dir']}",
        "",
        f"{metrics['pairs']} held-out pairs from `{metrics['data']}`. {intervals_note(metrics)}",
        "",
    ]
    for title, header, rows in tables(metrics):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows] + [""]
    if not metrics.get("judge"):
        lines += ["## Judge win rate", "", "No judge configured (`judge=<hub id or local dir>` of a reward model).", ""]
    lines += ["## Plots", ""] + [f"![{t}]({name})" for name, t in plots(metrics).items()] + [""]
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
        f"<code>{esc(str(metrics['data']))}</code>. {esc(intervals_note(metrics))}</p>",
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
    for name, title in plots(metrics).items():
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


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Every number of the evaluation as `test/...` scalars (values and interval ends), for W&B."""
    flat: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(value, list) and len(value) == 2 and all(isinstance(v, float) for v in value):
            flat[f"{prefix}_low"], flat[f"{prefix}_high"] = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[prefix] = value

    for key in ("base", "dpo", "implicit_reward", "kl", "judge"):
        walk(f"test/{key}", metrics.get(key) or {})
    return flat


def log_to_wandb(cfg: Any, out: Path, metrics: dict[str, Any], generations: list[dict[str, Any]]) -> None:
    import wandb

    from ..loggers import wandb_configured

    run = wandb.init(
        project=cfg.wandb_project,
        dir=str(out),
        job_type="eval",
        mode="online" if wandb_configured() else "offline",
        config={"run_dir": metrics["run_dir"]},
    )
    run.log(flat_metrics(metrics))
    columns = list(generations[0]) if generations else []
    run.log(
        {
            "test/generations": wandb.Table(columns=columns, data=[[g[c] for c in columns] for g in generations]),
            **{f"test/plots/{p.stem}": wandb.Image(str(p)) for p in sorted(out.glob("*.png"))},
        }
    )
    run.finish()
