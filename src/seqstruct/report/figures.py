"""Plots of the reports: a pretraining run's loss curve, learning curves (score against labelled training
examples, with fitted laws and n*), and the comparison figure of arms and baselines per task with their
paired differences."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # headless: reports are written on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogFormatter, MaxNLocator  # noqa: E402

from seqstruct.evaluation.extrapolation import CAP, HORIZON, PowerLaw  # noqa: E402
from seqstruct.io import atomic_path  # noqa: E402


def save_figure(fig: Figure, path: Path) -> None:
    """Write `fig` as a PNG atomically and close it (also when writing fails)."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
    finally:
        plt.close(fig)


def read_log(path: Path) -> list[dict[str, float]]:
    """Rows of a run's log.csv with numeric cells as floats and empty cells dropped."""
    with open(path, encoding="utf-8") as handle:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)
        ]


def plot_loss_curve(rows: list[dict[str, float]], path: Path, baseline_nll: float | None = None) -> None:
    """Training loss and held-out loss against optimiser steps, with the unigram baseline's held-out loss."""
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    heldout = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train, strict=True), label="training loss (80/10/10 masking)")
    if heldout:
        ax.plot(*zip(*heldout, strict=True), "o-", label="held-out loss (all <mask>)")
    if baseline_nll is not None:
        ax.axhline(baseline_nll, color="grey", linestyle="--", label="unigram baseline, held-out")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("masked-LM cross-entropy (nats)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


# ---------------------------------------------------------------------------------------------------------
# Learning curves: score against labelled training examples, one line per arm, one panel per split
# ---------------------------------------------------------------------------------------------------------


def learning_curve_figure(
    points: list[dict[str, Any]],
    metric: str,
    title: str = "",
    fits: Sequence[dict[str, Any]] = (),
    crossings: Sequence[dict[str, Any]] = (),
) -> Figure:
    """The learning-curve figure, unsaved (the caller closes it).

    `points` rows: {"arm", "split", "examples" (mean labelled training examples at that fraction), "mean",
    "std" (nan for one seed), "n" (seeds)}. One panel per split, side by side with a shared y axis; x is
    log-scaled, so the small fractions where pretraining should matter most are not crushed into a corner.
    Arms keep their first-seen order and one colour in every panel; bands are mean ± std where std is finite.
    `fits` and `crossings` (`seqstruct.evaluation.extrapolation.extrapolate`), where given, add each arm's
    fitted law and each n* (`_draw_extrapolation`).
    """
    if not points:
        raise ValueError("no learning-curve points to plot")
    bad = [p for p in points if not p["examples"] > 0]
    if bad:  # a log axis would drop them without a word
        raise ValueError(f"learning-curve points need examples > 0 for the log axis; got {bad[0]}")
    splits = list(dict.fromkeys(p["split"] for p in points))
    arms = list(dict.fromkeys(p["arm"] for p in points))
    colours = {arm: f"C{i % 10}" for i, arm in enumerate(arms)}
    fig, axes = plt.subplots(1, len(splits), figsize=(1.5 + 4.5 * len(splits), 4), sharey=True, squeeze=False)
    for ax, split in zip(axes[0], splits, strict=True):
        for arm in arms:
            rows = sorted(
                (p for p in points if p["arm"] == arm and p["split"] == split), key=lambda p: p["examples"]
            )
            if not rows:
                continue
            x = np.array([r["examples"] for r in rows], dtype=float)
            y = np.array([r["mean"] for r in rows], dtype=float)
            std = np.array([r["std"] for r in rows], dtype=float)
            ax.plot(x, y, "o-", color=colours[arm], label=arm)
            finite = np.isfinite(std)
            if finite.any():
                spread = np.where(finite, std, 0.0)
                ax.fill_between(
                    x, y - spread, y + spread, where=finite, color=colours[arm], alpha=0.2, linewidth=0
                )
        n_max = max(p["examples"] for p in points if p["split"] == split)
        own = [f for f in fits if f["split"] == split], [c for c in crossings if c["split"] == split]
        _draw_extrapolation(ax, *own, colours, n_max)
        ax.set_xscale("log")
        # Plain counts (20, 50, 100, 10,000) rather than 2x10^1-style labels, which run into one another;
        # powers of ten from 10^5 on, where an extrapolation reaches.
        ax.xaxis.set_major_formatter(FuncFormatter(_count_label))
        ax.xaxis.set_minor_formatter(LogFormatter(minor_thresholds=(2, 0.5)))
        ax.set_title(split)
        ax.set_xlabel("labelled training examples")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel(metric)
    axes[0][-1].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _count_label(x: float, position: int | None = None) -> str:
    """A major tick of the examples axis (a power of ten): 100, 10,000, then $10^5$ and up."""
    return f"{x:,.0f}" if x < 1e5 else f"$10^{{{math.log10(x):.0f}}}$"


def _draw_extrapolation(
    ax: Any,
    fits: Sequence[dict[str, Any]],
    crossings: Sequence[dict[str, Any]],
    colours: dict[str, str],
    n_max: float,
) -> None:
    """One panel's fitted laws and n*s. Each arm's law is thin and solid over its budgets, dashed beyond them
    out to the panel's furthest n* (× 1.5) or 100× the largest budget, whichever is further (at most 10^7);
    each finite n* (the bootstrap median, or the one fit's) is a dotted line in its arm's colour, its 95%
    interval a bar at the panel's foot. The region beyond 10× the largest budget is shaded: the lines there
    are extrapolations the data do not support."""
    laws = [f for f in fits if f["a"] is not None]
    if not laws:
        return
    stars = [(c, c["median"] if c["draws"] else c["n_star"]) for c in crossings if c["fitted"]]
    stars = [(c, star) for c, star in stars if star is not None]
    right = min(CAP, max([100.0 * n_max] + [1.5 * star for _, star in stars]))
    for fit in laws:
        law, colour = PowerLaw(fit["a"], fit["b"], fit["c"]), colours.get(fit["arm"], "grey")
        inside = np.geomspace(fit["n_min"], fit["n_max"], 50)  # [50]
        beyond = np.geomspace(fit["n_max"], right, 100)  # [100]
        # labels starting with "_" stay out of the legend: the arm is already named by its points
        ax.plot(inside, law(inside), "-", linewidth=0.8, color=colour, label=f"_{fit['arm']} fit")
        ax.plot(beyond, law(beyond), "--", linewidth=1.0, color=colour, label=f"_{fit['arm']} extrapolated")
    if right > HORIZON * n_max:
        label = f"beyond {HORIZON:g}× the largest budget: unsupported"
        ax.axvspan(HORIZON * n_max, right, color="grey", alpha=0.12, linewidth=0, label=label)
    foot = ax.get_xaxis_transform()  # x in data, y in axes fractions
    for i, (crossing, star) in enumerate(stars):
        colour, height = colours.get(crossing["arm"], "grey"), 0.04 + 0.05 * i
        ax.axvline(star, color=colour, linestyle=":", linewidth=1.0, label=f"_n* {crossing['arm']}")
        if crossing["draws"] and crossing["low"] is not None:
            high = min(right, crossing["high"] if crossing["high"] is not None else right)
            bar = {"linewidth": 3, "alpha": 0.5, "solid_capstyle": "butt", "transform": foot}
            ax.plot([crossing["low"], high], [height] * 2, color=colour, label="_interval", **bar)
        ax.annotate(f"n* {crossing['arm']}", (star, height + 0.015), xycoords=foot, fontsize=7, color=colour)


def plot_learning_curve(
    points: list[dict[str, Any]],
    path: Path,
    metric: str,
    title: str = "",
    fits: Sequence[dict[str, Any]] = (),
    crossings: Sequence[dict[str, Any]] = (),
) -> None:
    """Write `learning_curve_figure` as a PNG, atomically."""
    save_figure(learning_curve_figure(points, metric, title, fits, crossings), path)


# ---------------------------------------------------------------------------------------------------------
# The comparison figure: each arm and baseline per task, and the arms' paired differences
# ---------------------------------------------------------------------------------------------------------


def _spread(stats: dict[str, Any]) -> float:
    """The error bar of a summary cell: its std over seeds where several seeds gave different values."""
    std = stats.get("std")
    return float(std) if stats.get("n", 0) > 1 and std is not None and math.isfinite(std) else 0.0


def _bars(cells: Sequence[dict[str, Any]]) -> list[float] | None:
    """Error bars of some summary cells, or None where none has a spread (no zero-length bars drawn)."""
    spreads = [_spread(c) for c in cells]
    return spreads if any(spreads) else None


def comparison_figure(
    summary: dict[str, dict[str, dict[str, Any]]],
    models: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    figures: Sequence[str],
    label: Any = str,
    names: dict[str, str] | None = None,
) -> Figure:
    """The comparison as a picture, unsaved (the caller closes it).

    `summary` is `seqstruct.experiments.compare.summarise`'s (figure -> {model: {mean, std, n},
    "arm - reference": {...}}). Left: a row per figure in `figures` (named by `label`), a marker per model in
    `models` (pretrained arms and baselines alike; bars are ± std over seeds where seeds differed).
    Right: each (arm, reference) pair's paired difference per figure, against a zero line, with its spread
    where there is one; the panel's title says when no spread was measured (one seed)."""
    names = names or {}
    shown = [f for f in figures if f in summary]
    if not shown:
        raise ValueError(f"none of the figures {list(figures)} is in the summary")
    y = np.arange(len(shown))[::-1]  # [F] the first figure on top
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, 1.8 + 0.55 * len(shown)), sharey=True, gridspec_kw={"width_ratios": [3, 2]}
    )
    markers = "osD^vP*X"
    offsets = np.linspace(-0.25, 0.25, max(1, len(models)))  # [M] models side by side within a row
    for i, model in enumerate(models):
        cells = [summary[f].get(model, {"n": 0}) for f in shown]
        have = [j for j, c in enumerate(cells) if c["n"] > 0 and c["mean"] is not None]
        if not have:
            continue
        means = [cells[j]["mean"] for j in have]
        left.errorbar(
            means, y[have] + offsets[i], xerr=_bars([cells[j] for j in have]), fmt=markers[i % len(markers)], color=f"C{i % 10}",
            capsize=3, label=names.get(model, model),
        )  # fmt: skip
    left.set_yticks(y, [label(f) for f in shown])
    left.set_xlabel("score (higher is better)")
    left.grid(alpha=0.3, axis="x")
    left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.4 / len(shown)), ncol=2)
    left.set_title("each model per task")
    seeds = 0
    for i, (arm, reference) in enumerate(pairs):
        key = f"{arm} - {reference}"
        cells = [summary[f].get(key, {"n": 0}) for f in shown]
        have = [j for j, c in enumerate(cells) if c["n"] > 0]
        seeds = max([seeds, *(cells[j]["n"] for j in have)])
        if not have:
            continue
        right.errorbar(
            [cells[j]["mean"] for j in have], y[have] + 0.15 * i, xerr=_bars([cells[j] for j in have]),
            fmt="o", color=f"C{(len(models) + i) % 10}", capsize=3,
            label=f"{names.get(arm, arm)} − {names.get(reference, reference)}",
        )  # fmt: skip
    right.axvline(0.0, color="grey", linewidth=1)
    right.set_xlabel("paired difference")
    right.grid(alpha=0.3, axis="x")
    right.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.4 / len(shown)))
    spread = f"± std over {seeds} seeds" if seeds > 1 else "one seed: no spread measured"
    right.set_title(f"differences\n({spread})")
    reach = max(abs(x) for x in right.get_xlim())
    right.set_xlim(-reach, reach)  # zero in the middle: the sign reads at a glance
    right.xaxis.set_major_locator(MaxNLocator(4, symmetric=True))
    right.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:+.2f}" if x else "0"))
    fig.tight_layout()
    return fig


def plot_comparison(
    summary: dict[str, dict[str, dict[str, Any]]],
    path: Path,
    models: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    figures: Sequence[str],
    label: Any = str,
    names: dict[str, str] | None = None,
) -> None:
    """Write `comparison_figure` as a PNG, atomically."""
    save_figure(comparison_figure(summary, models, pairs, figures, label, names), path)
