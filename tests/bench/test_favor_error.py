"""The FAVOR+ error study's code paths at tiny sizes (not its numbers): files written, rows sane."""

from __future__ import annotations

import json
import math

import pytest

from seqstruct.bench import favor_error
from seqstruct.bench.favor_error import FavorErrorConfig
from tests.bench.test_attention import _csv


def test_favor_error_report_writes_sane_outputs(tmp_path) -> None:
    result = favor_error.favor_error_report(
        FavorErrorConfig(length=64, dim=8, features=[8, 16], draws=2, seed=0), tmp_path
    )
    rows = _csv(tmp_path / "favor_error.csv")
    assert [(r["method"], int(r["m"])) for r in rows] == [
        (m, f) for m in favor_error.ERROR_METHODS for f in (8, 16)
    ]
    assert all(int(r["draws"]) == 2 for r in rows)
    positive = [r for r in rows if r["method"].startswith("positive")]
    assert all(0 < float(r["mse_mean"]) < math.inf and int(r["nonfinite_draws"]) == 0 for r in positive)
    assert isinstance(result["orthogonal_beats_iid"]["positive"], bool)
    table = (tmp_path / "favor_error.md").read_text()
    assert (
        "| m | positive+iid | positive+orthogonal | trigonometric+iid | trigonometric+orthogonal |" in table
    )
    assert table.count("\n| 8 |") == 1 and " ± " in table
    assert (tmp_path / "favor_error.png").stat().st_size > 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["features"] == [8, 16] and config["draws"] == 2 and config["length"] == 64
    assert config["orthogonal_beats_iid"] == result["orthogonal_beats_iid"]


def test_positive_feature_error_falls_with_more_features() -> None:
    """In the low-variance regime (small q, k) the estimator's 1/m shows through even with 2 draws."""
    result = favor_error.favor_error_study(
        FavorErrorConfig(length=64, dim=8, features=[8, 512], draws=2, seed=0, input_std=0.5)
    )
    mse = {(r.method, r.m): r.mse_mean for r in result["rows"]}
    assert mse["positive+iid", 512] < mse["positive+iid", 8] / 4
    assert result["exact_mean_square"] > 0


def test_nonfinite_errors_are_counted_not_hidden(tmp_path, monkeypatch) -> None:
    real = favor_error.approximation_mse

    def trig_blows_up(q, k, v, exact, projection, kind):  # noqa: ANN001
        return math.inf if kind == "trigonometric" else real(q, k, v, exact, projection, kind)

    monkeypatch.setattr(favor_error, "approximation_mse", trig_blows_up)
    result = favor_error.favor_error_report(
        FavorErrorConfig(length=32, dim=4, features=[4], draws=2), tmp_path
    )
    trig = [r for r in result["rows"] if r.method.startswith("trigonometric")]
    assert all(r.nonfinite_draws == 2 and math.isnan(r.mse_mean) for r in trig)
    assert result["orthogonal_beats_iid"]["trigonometric"] is False
    assert "(2/2 non-finite)" in (tmp_path / "favor_error.md").read_text()


def test_config_refuses_sizes_the_study_cannot_run() -> None:
    with pytest.raises(ValueError, match="every m at least 2"):
        FavorErrorConfig(features=[1, 8])
    with pytest.raises(ValueError, match="must be positive"):
        FavorErrorConfig(draws=0)
