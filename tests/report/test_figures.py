"""The reports' plots: learning curves (log panels, fits, n*) and the comparison figure."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pytest

from seqstruct.report import comparison_figure, learning_curve_figure, plot_comparison, plot_learning_curve

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# ---------------------------------------------------------------------------------------------------------
# Learning curves
# ---------------------------------------------------------------------------------------------------------


def _grid() -> list[dict]:
    """Three arms x two splits x three fractions; one arm ran one seed (std nan)."""
    points = []
    for split in ("test_close", "test_remote"):
        for arm, seeds in (("lstm", 3), ("finetune", 3), ("probe", 1)):
            for examples in (12.0, 40.0, 400.0):
                points.append(
                    {
                        "arm": arm,
                        "split": split,
                        "examples": examples,
                        "mean": 0.3 + 0.1 * math.log10(examples),
                        "std": 0.02 if seeds > 1 else math.nan,
                        "n": seeds,
                    }
                )
    return points


def test_learning_curve_has_a_log_panel_per_split_and_a_line_per_arm() -> None:
    fig = learning_curve_figure(_grid(), "fmax", title="go-mf")
    try:
        axes = fig.get_axes()
        assert [ax.get_title() for ax in axes] == ["test_close", "test_remote"]
        for ax in axes:
            assert ax.get_xscale() == "log"
            assert [line.get_label() for line in ax.get_lines()] == ["lstm", "finetune", "probe"]
        # One colour per arm in every panel; bands only for the arms with several seeds.
        colours = [[line.get_color() for line in ax.get_lines()] for ax in axes]
        assert colours[0] == colours[1] and len(set(colours[0])) == 3
        assert all(len(ax.collections) == 2 for ax in axes)
        assert axes[0].get_shared_y_axes().joined(axes[0], axes[1])
        assert axes[0].get_ylabel() == "fmax" and fig.get_suptitle() == "go-mf"
        assert [t.get_text() for t in axes[-1].get_legend().get_texts()] == ["lstm", "finetune", "probe"]
    finally:
        plt.close(fig)


def test_plot_learning_curve_writes_a_png(tmp_path) -> None:
    path = tmp_path / "curve" / "learning_curve.png"
    plot_learning_curve(_grid(), path, "fmax")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in path.parent.iterdir()] == ["learning_curve.png"]  # no temporary left behind


def test_learning_curve_draws_fits_dashed_beyond_the_data_and_marks_n_star() -> None:
    fits = [
        {"arm": arm, "split": split, "a": 0.8, "b": b, "c": 0.3, "n_min": 12.0, "n_max": 400.0}
        for split in ("test_close", "test_remote")
        for arm, b in (("lstm", 2.0), ("finetune", 0.6))
    ] + [{"arm": "probe", "split": "test_close", "a": None, "b": None, "c": None}]  # no fit: not drawn
    crossing = {"arm": "finetune", "split": "test_close", "fitted": True, "draws": 200, "n_star": 7000.0}
    crossings = [crossing | {"median": 8000.0, "low": 3000.0, "high": None}]
    fig = learning_curve_figure(_grid(), "fmax", fits=fits, crossings=crossings)
    try:
        close, remote = fig.get_axes()
        lines = {line.get_label(): line for line in close.get_lines()}
        dashed = lines["_finetune extrapolated"]
        assert dashed.get_linestyle() == "--" and dashed.get_xdata()[0] == 400.0
        # out to 100× the largest budget, past the n* (× 1.5 would be 12,000)
        assert dashed.get_xdata()[-1] == pytest.approx(40000.0)
        assert lines["_lstm fit"].get_linestyle() == "-" and lines["_lstm fit"].get_xdata()[-1] == 400.0
        assert lines["_n* finetune"].get_xdata()[0] == 8000.0  # the bootstrap median
        assert lines["_interval"].get_xdata()[-1] == pytest.approx(40000.0)  # an open upper end: to the edge
        assert "_probe fit" not in lines and "_n* finetune" not in {x.get_label() for x in remote.get_lines()}
        # the legend keeps the arms and names the shaded region beyond 10× the data
        legend = [t.get_text() for t in remote.get_legend().get_texts()]
        assert legend == ["lstm", "finetune", "probe", "beyond 10× the largest budget: unsupported"]
        assert close.get_xlim()[1] >= 40000.0
    finally:
        plt.close(fig)


def test_learning_curve_refuses_what_a_log_axis_would_drop() -> None:
    points = _grid()
    points[0]["examples"] = 0.0
    with pytest.raises(ValueError, match="examples > 0"):
        learning_curve_figure(points, "fmax")
    with pytest.raises(ValueError, match="no learning-curve points"):
        learning_curve_figure([], "fmax")


# ---------------------------------------------------------------------------------------------------------
# The comparison figure
# ---------------------------------------------------------------------------------------------------------


def _comparison(seeds: int) -> dict:
    """Two arms and a baseline on two figures; the baseline has no link figure."""
    spread = 0.02 if seeds > 1 else math.nan
    return {
        "go-mf test_remote fmax": {
            "mlm": {"mean": 0.44, "std": spread, "n": seeds},
            "structure": {"mean": 0.43, "std": spread, "n": seeds},
            "naive": {"mean": 0.37, "std": 0.0, "n": seeds},
            "structure - mlm": {"mean": -0.01, "std": spread, "n": seeds},
        },
        "protein-link heldout mrr": {
            "mlm": {"mean": 0.36, "std": spread, "n": seeds},
            "structure": {"mean": 0.34, "std": spread, "n": seeds},
            "naive": {"mean": math.nan, "std": math.nan, "n": 0},
            "structure - mlm": {"mean": -0.02, "std": spread, "n": seeds},
        },
        "pretrain seconds": {"mlm": {"mean": 400.0, "std": spread, "n": seeds}},
    }


@pytest.mark.parametrize("seeds", [1, 3])
def test_comparison_figure_shows_each_model_per_task_and_the_differences(seeds) -> None:
    figures = ["go-mf test_remote fmax", "protein-link heldout mrr", "not run"]
    fig = comparison_figure(
        _comparison(seeds), ["mlm", "structure", "naive"], [("structure", "mlm")], figures,
        label=str.upper, names={"mlm": "MLM only"},
    )  # fmt: skip
    try:
        left, right = fig.get_axes()
        assert [t.get_text() for t in left.get_yticklabels()] == [
            "GO-MF TEST_REMOTE FMAX",
            "PROTEIN-LINK HELDOUT MRR",
        ]
        legend = [t.get_text() for t in left.get_legend().get_texts()]
        assert legend == ["MLM only", "structure", "naive"]
        # naive has one point (no link figure), the arms two each; the top row is the first figure
        points = {c.get_label(): c.lines[0].get_xydata() for c in left.containers}
        assert len(points["naive"]) == 1 and points["naive"][0][0] == pytest.approx(0.37)
        assert points["MLM only"][:, 0].tolist() == pytest.approx([0.44, 0.36])
        assert points["MLM only"][0, 1] > points["MLM only"][1, 1]
        (difference,) = right.containers
        assert difference.get_label() == "structure − MLM only"
        assert difference.lines[0].get_xdata().tolist() == pytest.approx([-0.01, -0.02])
        # error bars only where seeds differed; the title says which
        assert difference.has_xerr == (seeds > 1)
        assert ("no spread measured" in right.get_title()) == (seeds == 1)
    finally:
        plt.close(fig)


def test_comparison_figure_refuses_a_summary_without_the_figures(tmp_path) -> None:
    with pytest.raises(ValueError, match="none of the figures"):
        comparison_figure(_comparison(1), ["mlm"], [], ["go-mf test_close fmax"])
    path = tmp_path / "comparison.png"
    plot_comparison(
        _comparison(1), path, ["mlm", "naive"], [("structure", "mlm")], ["go-mf test_remote fmax"]
    )
    assert path.read_bytes()[:8] == PNG_SIGNATURE
