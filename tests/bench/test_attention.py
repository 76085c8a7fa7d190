"""The attention benchmarks' code paths at tiny sizes (not their numbers): files written, rows sane."""

from __future__ import annotations

import csv
import json

import pytest

from seqstruct.bench import attention as bench
from seqstruct.bench import attention_case
from seqstruct.bench.attention import AttentionBenchConfig
from seqstruct.cli import main


def _csv(path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_attention_report_in_process_writes_sane_outputs(tmp_path) -> None:
    config = AttentionBenchConfig(
        lengths=[128, 64],
        heads=2,
        head_dim=16,
        features=16,
        repeats=1,
        max_seconds=60,
        isolate=False,
        matmul_size=128,
    )
    result = bench.attention_report(config, tmp_path)
    rows = _csv(tmp_path / "attention.csv")
    assert list(rows[0]) == ["method", "mode", "L", "fwd_s", "fwdbwd_s", "peak_extra_mib", "note"]
    for mode in attention_case.MODES:
        for method in attention_case.METHODS:
            ours = [r for r in rows if r["method"] == method and r["mode"] == mode]
            assert [int(r["L"]) for r in ours] == [64, 128]
            if method == "performer" and result["config"]["performer_import_error"]:
                assert all(r["note"].startswith("skipped: performer-pytorch not importable") for r in ours)
                continue
            assert all(float(r["fwd_s"]) > 0 and float(r["fwdbwd_s"]) > 0 for r in ours)
            assert all(r["peak_extra_mib"] != "" for r in ours)  # measured (its size: test_attention_case)
    table = (tmp_path / "attention.md").read_text()
    assert "## bidirectional" in table and "## causal" in table and "favor ÷ sdpa" in table
    assert "GFLOP/s" in table and "fp32 matmul peak" in table
    assert (tmp_path / "attention.png").stat().st_size > 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["matmul_peak_gflops"] > 0 and config["lengths"] == [64, 128]
    assert {"cpu_model", "torch_threads", "torch", "device"} <= set(config["machine"])


def test_slow_or_failing_methods_are_skipped_at_longer_lengths(monkeypatch) -> None:
    tiny = {"lengths": [64, 128, 256], "heads": 1, "head_dim": 8, "features": 8, "repeats": 1}
    slow = bench.attention_benchmark(
        AttentionBenchConfig(
            **tiny, methods=["favor"], modes=["bidirectional"], max_seconds=0.0, isolate=False
        )
    )
    assert slow[0].fwdbwd_s > 0 and slow[0].note.startswith("timed once")
    assert [r.note for r in slow[1:]] == ["skipped: slower than 0 s at L=64"] * 2

    real = attention_case.measure_case

    def out_of_memory_from_128(spec):  # noqa: ANN001
        if spec.length >= 128:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")
        return real(spec)

    monkeypatch.setattr(attention_case, "measure_case", out_of_memory_from_128)
    rows = bench.attention_benchmark(
        AttentionBenchConfig(**tiny, methods=["sdpa"], modes=["causal"], isolate=False)
    )
    assert rows[0].fwdbwd_s > 0
    assert rows[1].fwdbwd_s is None and rows[1].note.startswith("out of memory")
    assert rows[2].note == "skipped: out of memory at L=128"


def test_favor_flop_count() -> None:
    # 12 matmuls of 2·L·m·d per head.
    assert bench.favor_flops(1, 8, 1024, 256, 64) == 12 * 2 * 8 * 1024 * 256 * 64


def test_config_refuses_unknown_methods_and_empty_sizes() -> None:
    with pytest.raises(ValueError, match="methods from"):
        AttentionBenchConfig(methods=["flash"])
    with pytest.raises(ValueError, match="must be positive"):
        AttentionBenchConfig(lengths=[])
    spec = AttentionBenchConfig(heads=2, head_dim=16, features=16, repeats=1).case("favor", "causal", 256)
    assert spec == attention_case.CaseSpec("favor", "causal", 256, 2, 16, 16, 1, 60.0, "cpu", "float32")


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


def test_cuda_methods_are_refused_on_the_cpu_and_favor_triton_runs_interpreted(monkeypatch, tmp_path) -> None:
    tiny = {"lengths": [64], "heads": 1, "head_dim": 16, "features": 16, "repeats": 1, "isolate": False}
    with pytest.raises(ValueError, match="sdpa-flash run on CUDA only"):
        AttentionBenchConfig(**tiny, methods=["sdpa-flash"])
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="favor-triton run on CUDA only"):
        AttentionBenchConfig(**tiny, methods=["favor-triton"])
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # tests/conftest.py set it before triton was imported
    config = AttentionBenchConfig(**tiny, methods=["favor", "favor-triton"], matmul_size=64, copy_mib=1)
    result = bench.attention_report(config, tmp_path)
    assert all(r.fwdbwd_s and r.fwdbwd_s > 0 for r in result["results"])
    table = (tmp_path / "attention.md").read_text()
    assert "favor-triton GFLOP/s" in table and "Bandwidth of forward+backward" in table
    assert result["config"]["copy_peak_gbps"] > 0
