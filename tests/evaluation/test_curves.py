"""Learning-curve subsets (stratified, nested, seeded) and the grid's summary against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seqstruct.evaluation.curves import (
    curve_points,
    curve_table,
    nested_subsets,
    strata,
    stratified_order,
    subset_size,
)


def test_strata_is_the_class_or_the_rarest_label() -> None:
    assert strata(np.array([2, 0, 1])).tolist() == [2, 0, 1]
    targets = np.array(
        [
            [1, 1, 0],  # label 0 on 3 rows, label 1 on 2: rarest is 1
            [1, 0, 1],  # label 2 on 1 row: rarest is 2
            [1, 1, 0],
            [0, 0, 0],  # no label: a stratum of its own
        ],
        dtype=bool,
    )
    assert strata(targets).tolist() == [1, 2, 1, -1]


def test_every_prefix_of_the_order_keeps_the_class_proportions() -> None:
    groups = np.array([0] * 60 + [1] * 30 + [2] * 10)
    rng = np.random.default_rng(5)
    groups = groups[rng.permutation(len(groups))]
    order = stratified_order(groups, seed=3)
    assert sorted(order.tolist()) == list(range(len(groups)))  # a permutation
    n, classes = len(groups), 3
    for m in range(1, n + 1):
        counts = np.bincount(groups[order[:m]], minlength=classes)
        for c in range(classes):
            share = (groups == c).sum() / n
            # systematic sampling: within 1 + C * share of the proportional count (module docstring)
            assert abs(counts[c] - m * share) <= 1 + classes * share, (m, c, counts)


def test_the_order_is_seeded() -> None:
    groups = np.repeat([0, 1, 2], 20)
    assert stratified_order(groups, 0).tolist() == stratified_order(groups, 0).tolist()
    assert stratified_order(groups, 0).tolist() != stratified_order(groups, 1).tolist()


def test_subsets_are_nested_sized_and_stratified() -> None:
    targets = np.repeat(np.arange(4), [400, 300, 200, 100])
    fractions = [0.01, 0.03, 0.1, 0.3, 1.0]
    subsets = nested_subsets(targets, fractions, seed=0)
    assert [len(subsets[f]) for f in fractions] == [10, 30, 100, 300, 1000]
    for small, large in zip(fractions, fractions[1:], strict=False):
        assert set(subsets[small]) <= set(subsets[large])
    assert np.bincount(targets[subsets[0.1]], minlength=4).tolist() == [40, 30, 20, 10]
    assert subsets[1.0].tolist() == list(range(1000))
    # a pool: fraction 1.0 is `pool` rows, and the pool's subsets are prefixes of the same order
    pooled = nested_subsets(targets, [0.5, 1.0], seed=0, pool=200)
    assert len(pooled[1.0]) == 200 and len(pooled[0.5]) == 100
    assert set(pooled[1.0]) <= set(subsets[0.3])


def test_multilabel_subsets_spread_the_rare_label() -> None:
    targets = np.zeros((200, 2), dtype=bool)
    targets[:, 0] = True
    targets[::20, 1] = True  # 10 rows carry the rare label
    half = nested_subsets(targets, [0.5], seed=1)[0.5]
    assert targets[half, 1].sum() == 5


def test_subset_size_rounds_and_checks() -> None:
    assert subset_size(0.01, 50) == 1  # at least one row
    assert subset_size(0.3, 1000) == 300
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        subset_size(0.0, 10)
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        subset_size(1.5, 10)


def _rows() -> list[dict]:
    """Two arms, two fractions, two seeds, one split; accuracy and macro_f1."""
    values = {
        ("lstm", 0.1, 0): 0.40,
        ("lstm", 0.1, 1): 0.50,
        ("lstm", 1.0, 0): 0.70,
        ("lstm", 1.0, 1): 0.80,
        ("probe", 0.1, 0): 0.60,
        ("probe", 0.1, 1): 0.80,
        ("probe", 1.0, 0): 0.75,
        ("probe", 1.0, 1): 0.85,
    }
    rows = []
    for (arm, fraction, seed), value in values.items():
        for metric, v in (("accuracy", value), ("macro_f1", value / 2)):
            examples = 10 + seed if fraction == 0.1 else 100
            rows.append(
                {"arm": arm, "fraction": fraction, "seed": seed, "examples": examples}
                | {"split": "test", "metric": metric, "value": v}
            )
    return rows


def test_curve_points_by_hand() -> None:
    points = curve_points(_rows(), "accuracy")
    assert len(points) == 4
    lstm_small = next(p for p in points if p["arm"] == "lstm" and p["fraction"] == 0.1)
    assert lstm_small["mean"] == pytest.approx(0.45)
    assert lstm_small["std"] == pytest.approx(math.sqrt(0.005))  # sample std of 0.40, 0.50
    assert lstm_small["examples"] == pytest.approx(10.5) and lstm_small["n"] == 2
    one_seed = curve_points([r for r in _rows() if r["seed"] == 0], "accuracy")
    assert all(math.isnan(p["std"]) for p in one_seed)


def test_curve_table_gap_is_paired_by_seed() -> None:
    table = curve_table(_rows(), "accuracy", reference="lstm")
    lines = table.splitlines()
    assert lines[0] == "accuracy on test"
    assert lines[2] == "| fraction | examples | lstm | probe | probe − lstm |"
    # gaps at 0.1: 0.20 and 0.30 -> mean 0.25, std 0.071; at 1.0: 0.05 and 0.05 -> 0.05 ± 0
    assert lines[4] == "| 0.1 | 10 | 0.450 ± 0.071 | 0.700 ± 0.141 | +0.250 ± 0.071 |"
    assert lines[5] == "| 1 | 100 | 0.750 ± 0.071 | 0.800 ± 0.071 | +0.050 ± 0.000 |"
    with pytest.raises(ValueError, match="reference arm 'lstm-init'"):
        curve_table(_rows(), "accuracy", reference="lstm-init")
