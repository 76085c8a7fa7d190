"""Tables that mean what they say: spreads only where runs differed, no differences of run times, "—"
where a model has no such figure, and figure names in words."""

from __future__ import annotations

import math

import pytest

from seqstruct.evaluation.tables import (
    comparison_table,
    figure_label,
    task_markdown,
    task_summary,
    value_cell,
)


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        ((0.4567, 0.0123, 3), "0.457 ± 0.012"),
        ((0.4567, 0.0, 3), "0.457"),  # every seed gave the same value: a deterministic method
        ((0.4567, math.nan, 1), "0.457"),  # one run has no spread
        ((0.4567, 0.02, 0), "—"),  # no runs: not a figure of this model
        ((None, None, 2), "n/a"),  # undefined (e.g. an AUROC without two classes)
    ],
)
def test_value_cell(args, shown) -> None:
    assert value_cell(*args) == shown


def test_a_difference_keeps_its_sign() -> None:
    assert value_cell(0.02, math.nan, 1, sign="+") == "+0.020"
    assert value_cell(-0.02, 0.01, 2, sign="+") == "-0.020 ± 0.010"


def _summary() -> dict:
    """Two seeds: arms a, b (pretrained), a deterministic baseline `naive` (the same value each seed)."""
    return {
        "go-mf test_remote fmax": {
            "a": {"mean": 0.40, "std": 0.02, "n": 2},
            "b": {"mean": 0.43, "std": 0.01, "n": 2},
            "naive": {"mean": 0.30, "std": 0.0, "n": 2},
            "b - a": {"mean": 0.03, "std": 0.01, "n": 2},
            "naive - a": {"mean": -0.10, "std": 0.02, "n": 2},
        },
        "pretrain seconds": {
            "a": {"mean": 400.0, "std": 10.0, "n": 2},
            "b": {"mean": 560.4, "std": 20.0, "n": 2},
            "naive": {"mean": math.nan, "std": math.nan, "n": 0},
            "b - a": {"mean": 160.4, "std": 5.0, "n": 2},
            "naive - a": {"mean": math.nan, "std": math.nan, "n": 0},
        },
    }


def test_comparison_table_rows_mean_what_they_say() -> None:
    table = comparison_table(_summary(), ["a", "b", "naive"], [("b", "a"), ("naive", "a")])
    lines = table.splitlines()
    assert lines[0] == "| figure | a | b | naive | b − a | naive − a |"
    # The baseline's deterministic value stands alone; differences keep their seeds' spread.
    assert (
        lines[2]
        == "| go-mf test_remote fmax | 0.400 ± 0.020 | 0.430 ± 0.010 | 0.300 | +0.030 ± 0.010 | -0.100 ± 0.020 |"
    )
    # Times: whole seconds per arm, "—" for the baseline (not pretrained) and under every difference.
    assert lines[3] == "| pretrain seconds | 400 ± 10 | 560 ± 20 | — | — | — |"
    assert "0.000" not in table


def test_comparison_table_names_figures_and_arms_in_words() -> None:
    table = comparison_table(
        _summary(), ["a", "b"], [("b", "a")], label=figure_label, names={"a": "MLM only", "b": "structure"}
    )
    assert table.splitlines()[0] == "| figure | MLM only | structure | structure − MLM only |"
    assert "| GO-MF Fmax, remote homology |" in table and "| pretraining time (s) |" in table


@pytest.mark.parametrize(
    ("key", "label"),
    [
        ("go-mf test_remote fmax", "GO-MF Fmax, remote homology"),
        ("go-mf-class test_close macro_f1", "GO-MF class macro-F1, close homology"),
        ("protein-link heldout mrr", "protein links MRR, held-out sequences"),
        ("knn accuracy (topic)", "knn accuracy (topic)"),  # another shape: as it is
        ("pretrain seconds", "pretraining time (s)"),
    ],
)
def test_figure_label(key, label) -> None:
    assert figure_label(key) == label


def _result(seeds: list[int], std: float) -> dict:
    return {
        "task": "go-mf",
        "model": "m",
        "mode": "probe",
        "seeds": seeds,
        "metrics": {"test_remote": {"fmax": 0.5, "threshold": 0.3, "micro_aupr": None}},
        "std": {"test_remote": {"fmax": std, "threshold": 0.0, "micro_aupr": None}},
    }


def test_task_rows_show_a_spread_only_where_seeds_differed() -> None:
    assert task_markdown(_result([0, 1, 2], 0.0)).splitlines()[-1] == "| m | probe | 3 | 0.500 | n/a |"
    assert (
        task_markdown(_result([0, 1, 2], 0.01)).splitlines()[-1] == "| m | probe | 3 | 0.500 ± 0.010 | n/a |"
    )
    assert (
        task_summary(_result([0, 1], 0.0))
        == "go-mf [m, probe] test_remote: fmax 0.500, threshold 0.300, micro_aupr n/a"
    )
