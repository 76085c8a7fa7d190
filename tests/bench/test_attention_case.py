"""One attention case, measured the way the benchmark measures it: in a fresh Python process."""

from __future__ import annotations

import pytest

from seqstruct.bench.attention_case import CaseSpec, measure_case_isolated


def small_case(**shape: object) -> CaseSpec:
    """A one-repeat fp32 CPU case of the given method, mode and sizes."""
    return CaseSpec(**shape, repeats=1, max_seconds=60.0, device="cpu", dtype="float32")  # type: ignore[arg-type]


@pytest.mark.slow
def test_isolated_case_runs_in_a_fresh_process() -> None:
    """The real benchmark's path: one case in a child process (its import of seqstruct takes seconds)."""
    spec = small_case(method="favor", mode="causal", length=256, heads=2, head_dim=16, features=16)
    row = measure_case_isolated(spec, timeout=300)
    assert row.fwd_s > 0 and row.fwdbwd_s > 0 and row.peak_extra_mib is not None
    assert row.note == ""


def test_the_peak_counts_what_the_attention_allocates(monkeypatch) -> None:
    """An attention that holds 64 MiB more during its forward shows a peak of at least that: the memory
    column measures something (a peak of 0 for everything would pass a `>= 0` check)."""
    import torch

    from seqstruct.bench import attention_case

    held = 16 * 2**20  # float32 values: 64 MiB

    def hungry(q, k, v):
        scratch = torch.ones(held, dtype=torch.float32) * 2.0  # written, so its pages are resident
        return q * scratch[:1] + k + v

    monkeypatch.setattr(attention_case, "attention_fn", lambda spec: (hungry, ""))
    spec = small_case(method="sdpa", mode="bidirectional", length=64, heads=1, head_dim=8, features=8)
    row = attention_case.measure_case(spec)
    if "upper bound" in row.note:  # a kernel that cannot reset VmHWM: the peak is not this run's alone
        assert row.peak_extra_mib >= 60
    else:
        assert 60 <= row.peak_extra_mib < 400
