"""Learning curves: nested, stratified, seeded training subsets, and the mean ± std of a grid of results.

A learning curve asks how a score grows with the labelled examples a method is given (Wang, Khabsa and Ma,
"To Pretrain or Not to Pretrain", ACL 2020). Every arm must see the same examples at a budget, and a larger
budget must contain the smaller one, or the curve mixes the effect of more data with that of other data.
Both hold by construction here: for each seed the train rows are put in one order (`stratified_order`),
and the subset of size m is its first m rows.

The order interleaves the classes so that every prefix keeps the class proportions (systematic stratified
sampling): row r of class c, at rank k among its class's rows shuffled, gets the key (k + u) / n_c with u
uniform in [0, 1), and rows are sorted by key. A prefix of m rows thus holds about m * n_c / n rows of
class c whatever m is. A multi-label row is stratified by its rarest label (the label fewest train rows
carry), so that rare labels are spread over the budgets rather than left to chance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def strata(targets: np.ndarray) -> np.ndarray:
    """[n] stratum of each row: its class (targets [n] class indices), or its rarest label (targets [n, C]
    booleans); a multi-label row without any label is a stratum of its own (-1)."""
    if targets.ndim == 1:
        return targets.astype(np.int64)
    counts = targets.sum(axis=0)  # [C] rows per label
    rarity = np.where(targets, counts[None, :], np.iinfo(np.int64).max)  # [n, C]
    rarest = rarity.argmin(axis=1)  # [n]
    return np.where(targets.any(axis=1), rarest, -1).astype(np.int64)


def stratified_order(groups: np.ndarray, seed: int) -> np.ndarray:
    """[n] a permutation of the rows whose every prefix keeps the proportions of `groups` [n] (module
    docstring); the same for the same (groups, seed)."""
    rng = np.random.default_rng(seed)
    keys = np.empty(len(groups), dtype=np.float64)  # [n]
    for group in np.unique(groups):
        rows = np.flatnonzero(groups == group)
        ranks = rng.permutation(len(rows))  # [n_c] rank of each row within its class
        keys[rows] = (ranks + rng.random(len(rows))) / len(rows)
    return np.argsort(keys, kind="stable")


def subset_size(fraction: float, pool: int) -> int:
    """Rows at `fraction` of a pool of `pool` rows: rounded, at least one."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"a training fraction must be in (0, 1]; got {fraction}")
    return max(1, min(pool, round(fraction * pool)))


def nested_subsets(
    targets: np.ndarray, fractions: Sequence[float], seed: int, pool: int = 0
) -> dict[float, np.ndarray]:
    """{fraction: sorted row indices}: the first subset_size(fraction, P) rows of `stratified_order`, where
    P = pool (0: every row) is the size at fraction 1.0. Each subset contains the smaller ones."""
    order = stratified_order(strata(targets), seed)
    size = len(order) if not pool else min(pool, len(order))
    return {f: np.sort(order[: subset_size(f, size)]) for f in fractions}


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else math.nan


def curve_points(rows: Sequence[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Mean ± std over seeds of `metric` per (arm, split, fraction), in first-seen order.

    rows: one per (arm, fraction, seed, split, metric) with keys arm, fraction, seed, examples, split,
    metric, value. Returns {arm, split, fraction, examples (mean over seeds), mean, std (nan for one seed),
    n} per point: what `seqstruct.report.plot_learning_curve` draws.
    """
    cells: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for row in rows:
        if row["metric"] == metric:
            cells.setdefault((row["arm"], row["split"], row["fraction"]), []).append(row)
    points = []
    for (arm, split, fraction), found in cells.items():
        mean, std = _mean_std([r["value"] for r in found])
        examples = float(np.mean([r["examples"] for r in found]))
        points.append(
            {"arm": arm, "split": split, "fraction": fraction, "examples": examples}
            | {"mean": mean, "std": std, "n": len(found)}
        )
    return points


def _cell(mean: float, std: float, n: int, sign: str = "") -> str:
    if n == 0:
        return "—"
    return f"{mean:{sign}.3f}" if n == 1 else f"{mean:{sign}.3f} ± {std:.3f}"


def curve_table(rows: Sequence[dict[str, Any]], metric: str, reference: str) -> str:
    """Markdown: per split, a row per fraction with the training examples, each arm's mean ± std of
    `metric`, and each other arm's gap to `reference` (paired by seed: the same subset)."""
    value = {
        (r["arm"], r["split"], r["fraction"], r["seed"]): r["value"] for r in rows if r["metric"] == metric
    }
    examples = {(r["fraction"], r["seed"]): r["examples"] for r in rows}
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    if reference not in arms:
        raise ValueError(f"reference arm {reference!r} has no results; arms: {arms}")
    others = [arm for arm in arms if arm != reference]
    splits = list(dict.fromkeys(r["split"] for r in rows if r["metric"] == metric))
    fractions = sorted({r["fraction"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    out = []
    for split in splits:
        header = ["fraction", "examples", *arms, *[f"{arm} − {reference}" for arm in others]]
        out += [f"{metric} on {split}", "", "| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
        for fraction in fractions:
            counts = [examples[(fraction, s)] for s in seeds if (fraction, s) in examples]
            cells = [f"{fraction:g}", f"{np.mean(counts):,.0f}" if counts else "—"]
            for arm in arms:
                found = [
                    value[(arm, split, fraction, s)] for s in seeds if (arm, split, fraction, s) in value
                ]
                cells.append(_cell(*_mean_std(found), len(found)) if found else "—")
            for arm in others:
                paired = [
                    value[(arm, split, fraction, s)] - value[(reference, split, fraction, s)]
                    for s in seeds
                    if (arm, split, fraction, s) in value and (reference, split, fraction, s) in value
                ]
                cells.append(_cell(*_mean_std(paired), len(paired), sign="+") if paired else "—")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)
