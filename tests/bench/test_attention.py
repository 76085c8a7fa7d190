"""The attention benchmarks' code paths at tiny sizes (not their numbers): files written, rows sane."""

from __future__ import annotations

import csv
import json
import math

import pytest

from seqstruct.bench import attention as bench
from seqstruct.cli import main


def _csv(path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_favor_error_report_writes_sane_outputs(tmp_path) -> None:
    result = bench.favor_error_report(tmp_path, length=64, dim=8, features=[8, 16], draws=2, seed=0)
    rows = _csv(tmp_path / "favor_error.csv")
    assert [(r["method"], int(r["m"])) for r in rows] == [
        (m, f) for m in bench.ERROR_METHODS for f in (8, 16)
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
    result = bench.favor_error_study(length=64, dim=8, features=[8, 512], draws=2, seed=0, input_std=0.5)
    mse = {(r.method, r.m): r.mse_mean for r in result["rows"]}
    assert mse["positive+iid", 512] < mse["positive+iid", 8] / 4
    assert result["exact_mean_square"] > 0


def test_nonfinite_errors_are_counted_not_hidden(tmp_path, monkeypatch) -> None:
    real = bench.approximation_mse

    def trig_blows_up(q, k, v, exact, projection, kind):  # noqa: ANN001
        return math.inf if kind == "trigonometric" else real(q, k, v, exact, projection, kind)

    monkeypatch.setattr(bench, "approximation_mse", trig_blows_up)
    result = bench.favor_error_report(tmp_path, length=32, dim=4, features=[4], draws=2)
    trig = [r for r in result["rows"] if r.method.startswith("trigonometric")]
    assert all(r.nonfinite_draws == 2 and math.isnan(r.mse_mean) for r in trig)
    assert result["orthogonal_beats_iid"]["trigonometric"] is False
    assert "(2/2 non-finite)" in (tmp_path / "favor_error.md").read_text()


def test_attention_report_in_process_writes_sane_outputs(tmp_path) -> None:
    result = bench.attention_report(
        tmp_path,
        lengths=[128, 64],
        heads=2,
        head_dim=16,
        features=16,
        repeats=1,
        max_seconds=60,
        isolate=False,
        matmul_size=128,
    )
    rows = _csv(tmp_path / "attention.csv")
    assert list(rows[0]) == ["method", "mode", "L", "fwd_s", "fwdbwd_s", "peak_extra_mib", "note"]
    for mode in bench.MODES:
        for method in bench.METHODS:
            ours = [r for r in rows if r["method"] == method and r["mode"] == mode]
            assert [int(r["L"]) for r in ours] == [64, 128]
            if method == "performer" and result["config"]["performer_import_error"]:
                assert all(r["note"].startswith("skipped: performer-pytorch not importable") for r in ours)
                continue
            assert all(float(r["fwd_s"]) > 0 and float(r["fwdbwd_s"]) > 0 for r in ours)
            assert all(float(r["peak_extra_mib"]) >= 0 for r in ours)
    table = (tmp_path / "attention.md").read_text()
    assert "## bidirectional" in table and "## causal" in table and "favor ÷ sdpa" in table
    assert "GFLOP/s" in table and "fp32 matmul peak" in table
    assert (tmp_path / "attention.png").stat().st_size > 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["matmul_peak_gflops"] > 0 and config["lengths"] == [64, 128]
    assert {"cpu_model", "torch_threads", "torch", "device"} <= set(config["machine"])


def test_slow_or_failing_methods_are_skipped_at_longer_lengths(monkeypatch) -> None:
    slow = bench.attention_benchmark(
        [64, 128, 256], 1, 8, 8, 1, ["favor"], ["bidirectional"], max_seconds=0.0, isolate=False
    )
    assert slow[0].fwdbwd_s > 0 and slow[0].note.startswith("timed once")
    assert [r.note for r in slow[1:]] == ["skipped: slower than 0 s at L=64"] * 2

    real = bench.measure_case

    def out_of_memory_from_128(spec):  # noqa: ANN001
        if spec.length >= 128:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")
        return real(spec)

    monkeypatch.setattr(bench, "measure_case", out_of_memory_from_128)
    rows = bench.attention_benchmark([64, 128, 256], 1, 8, 8, 1, ["sdpa"], ["causal"], isolate=False)
    assert rows[0].fwdbwd_s > 0
    assert rows[1].fwdbwd_s is None and rows[1].note.startswith("out of memory")
    assert rows[2].note == "skipped: out of memory at L=128"


def test_favor_flop_count() -> None:
    # 12 matmuls of 2·L·m·d per head.
    assert bench.favor_flops(1, 8, 1024, 256, 64) == 12 * 2 * 8 * 1024 * 256 * 64


@pytest.mark.slow
def test_isolated_case_runs_in_a_fresh_process() -> None:
    """The real benchmark's path: one case in a child process (its import of seqstruct takes seconds)."""
    spec = bench.CaseSpec("favor", "causal", 256, 2, 16, 16, 1, 60.0, "cpu", "float32")
    row = bench.measure_case_isolated(spec, timeout=300)
    assert row.fwd_s > 0 and row.fwdbwd_s > 0 and row.peak_extra_mib >= 0
    assert row.note == ""


def test_cli_runs_both_benchmarks(tmp_path, capsys) -> None:
    error_dir, speed_dir = tmp_path / "error", tmp_path / "speed"
    assert main(["bench", "favor-error", "-o", str(error_dir), "--length", "32", "--dim", "4"]
                + ["--features", "4", "8", "--draws", "2"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "orthogonal beats iid at every m (positive features):" in out
    assert str(error_dir / "favor_error.csv") in out
    args = ["bench", "attention", "-o", str(speed_dir), "--lengths", "32", "64", "--heads", "1"]
    args += ["--head-dim", "8", "--features", "8", "--repeats", "1", "--methods", "sdpa", "favor"]
    args += ["--modes", "bidirectional", "--in-process", "--matmul-size", "64"]
    assert main(args) == 0
    assert str(speed_dir / "attention.md") in capsys.readouterr().out
    assert len(_csv(speed_dir / "attention.csv")) == 4
    assert main(["bench", "attention", "-o", str(speed_dir), "--lengths", "0", "--in-process"]) == 2
    assert "must be positive" in capsys.readouterr().err
