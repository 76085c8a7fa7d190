"""One attention case, measured the way the benchmark measures it: in a fresh Python process."""

from __future__ import annotations

import pytest

from seqstruct.bench.attention_case import CaseSpec, measure_case_isolated


@pytest.mark.slow
def test_isolated_case_runs_in_a_fresh_process() -> None:
    """The real benchmark's path: one case in a child process (its import of seqstruct takes seconds)."""
    spec = CaseSpec(
        method="favor",
        mode="causal",
        length=256,
        heads=2,
        head_dim=16,
        features=16,
        repeats=1,
        max_seconds=60.0,
        device="cpu",
        dtype="float32",
    )
    row = measure_case_isolated(spec, timeout=300)
    assert row.fwd_s > 0 and row.fwdbwd_s > 0 and row.peak_extra_mib >= 0
    assert row.note == ""
