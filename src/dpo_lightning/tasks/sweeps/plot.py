"""summary.png: each plotted metric against one swept key, one line per combination of the other swept keys. The x
axis is laid out so its labels never overlap: the swept values themselves as ticks, on a log scale when positive
and spanning a decade or more, evenly spaced when they are text or too close to tell apart (0.1, 0.11, 0.5)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .jobs import SweepJob

MAX_LABELS = 20  # more distinct numbers than this: every k-th is labelled (text: every one, the figure wider)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def label(value: Any, width: int = 24) -> str:
    """A tick label: a float to 3 significant digits, a dotted path (`--x loss._target_`) by its last part, at
    most `width` characters."""
    text = f"{value:.3g}" if isinstance(value, float) else str(value)
    if len(text) > width and "." in text and " " not in text:
        text = text.rsplit(".", 1)[-1]
    return text if len(text) <= width else text[: width - 1] + "…"


def axis(values: list[Any]) -> tuple[dict[Any, float], str]:
    """Each distinct value's position on the x axis and how the axis is scaled ('' for the values' own scale)."""
    distinct = list(dict.fromkeys(values))
    if len(distinct) < 2 or not all(is_number(v) for v in distinct):  # text (loss=dpo,ipo), one value: in order
        return {v: float(i) for i, v in enumerate(distinct)}, "" if len(distinct) < 2 else "in sweep order"
    distinct.sort()
    log = distinct[0] > 0 and distinct[-1] / distinct[0] >= 10
    at = {v: math.log10(v) if log else float(v) for v in distinct}
    gaps = [at[b] - at[a] for a, b in zip(distinct, distinct[1:])]
    even = (at[distinct[-1]] - at[distinct[0]]) / (len(distinct) - 1)
    if min(gaps) < 0.3 * even:  # some values too close to label apart on their own scale
        return {v: float(i) for i, v in enumerate(distinct)}, "evenly spaced"
    return at, "log scale" if log else ""


def x_key(jobs: list[SweepJob], keys: list[str], x: str | None) -> str | None:
    """The key to plot against: `x` when given, else the first swept key with numeric values, else the first."""
    if x is not None:
        return x
    numeric = [k for k in keys if all(is_number(j.value(k)) for j in jobs)]
    return (numeric or keys or [None])[0]


def plot_summary(jobs: list[SweepJob], keys: list[str], metrics: list[str], out: Path, x: str | None = None) -> Path:
    """Plot the finished jobs' `metrics` into `out` (a PNG): a failed job's value stays on the axis, marked by a
    dotted red line, and is named under the plot."""
    import matplotlib.pyplot as plt

    fig = summary_figure(jobs, keys, metrics, x)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def summary_figure(jobs: list[SweepJob], keys: list[str], metrics: list[str], x: str | None = None):
    """The matplotlib figure of `plot_summary` (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finished = [job for job in jobs if not job.failed]
    key = x_key(finished, keys, x)
    xs = [job.value(key) if key else job.name for job in jobs]
    xs = [v if is_number(v) else str(v) for v in xs]  # None, lists, text: as text
    at, scale = axis(xs)
    others = [k for k in keys if k != key]
    lines: dict[str, list[tuple[float, SweepJob]]] = {}
    failed = [(at[v], job) for job, v in zip(jobs, xs) if job.failed]
    for job, v in zip(jobs, xs):
        if not job.failed:
            name = ", ".join(f"{k}={job.value(k)}" for k in others)
            lines.setdefault(name, []).append((at[v], job))

    style = "none" if scale == "in sweep order" else "-"  # text: points, no line implying an order between them
    ticks = sorted(at.items(), key=lambda item: item[1])
    step = math.ceil(len(ticks) / MAX_LABELS) if all(is_number(v) for v, _ in ticks) else 1
    shown = ticks[::step]
    longest = max(len(label(v)) for v, _ in shown)
    long = len(shown) > 6 or longest > 6  # then vertical: each label as narrow as a line of text
    width = max(4.2, min(9.0, 0.3 * len(shown)))
    height = 3.6 + (0.075 * longest if long else 0)
    fig, axes = plt.subplots(1, len(metrics), figsize=(width * len(metrics), height), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for name, points in lines.items():
            points = sorted((p, j.metric(metric)) for p, j in points if is_number(j.metric(metric)))
            if points:
                ys = [m for _, m in points]
                ax.plot([p for p, _ in points], ys, marker="o", ls=style, label=name or None)
        for p in sorted({p for p, _ in failed}):
            ax.axvline(p, color="firebrick", ls=":", lw=1.2)
        ax.set_xticks([p for _, p in shown], [label(v) for v, _ in shown])
        ax.minorticks_off()
        if long:
            ax.tick_params(axis="x", labelrotation=90)
        ax.set(xlabel=f"{key or 'job'}" + (f" ({scale})" if scale else ""), title=metric)
        ax.grid(alpha=0.3)
    if any(lines):
        axes[0][-1].legend(fontsize=7, loc="best")
    if failed:
        names = ", ".join(job.name for _, job in failed)
        where = f" ({key}: red dotted lines)" if key else ""
        fig.text(0.01, 0.01, f"failed, not plotted: job {names}{where}", fontsize=8, color="firebrick")
    fig.tight_layout(rect=(0, 0.05 if failed else 0, 1, 1))
    return fig
