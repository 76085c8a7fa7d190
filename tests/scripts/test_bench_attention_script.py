"""scripts/gpu/bench-attention.sh --dry-run: the GPU call's every step on the CPU (the kernels compiled for
sm_90, their tests and both benchmarks under Triton's interpreter), so a GPU minute is not spent on a typo."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_dry_run_brings_back_the_tables_and_the_archive(tmp_path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu" / "bench-attention.sh"), "--dry-run", "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for step in ("compile", "tests", "bench-bf16", "bench-fp32", "profile"):
        assert f"{step}: exit 0" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "attention-bf16.md", "attention-fp32.md", "bench-attention.tar.gz", "tests.log",
    ]  # fmt: skip
    assert "passed" in (tmp_path / "tests.log").read_text()
    table = (tmp_path / "attention-bf16.md").read_text()
    assert "favor-triton fwd+bwd" in table and "bfloat16 on cpu" in table
    with tarfile.open(tmp_path / "bench-attention.tar.gz") as archive:
        names = set(archive.getnames())
    assert {"./bf16/attention.csv", "./fp32/config.json", "./profile.txt", "./steps.log"} <= names
