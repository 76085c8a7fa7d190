"""The helpers every benchmark shares."""

from __future__ import annotations

import math

import torch

from seqstruct.bench.common import cpu_model, fmt, machine_info


def test_cpu_model_reads_the_model_name_line() -> None:
    cpuinfo = (
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338\nflags\t: fpu\n"
    )
    assert cpu_model(cpuinfo) == "Intel(R) Xeon(R) Gold 6338"
    assert cpu_model("processor\t: 0\nBogoMIPS\t: 50.00\n") == ""


def test_fmt_marks_what_was_not_measured() -> None:
    assert fmt(None) == "—" and fmt(math.nan) == "—"
    assert fmt(0.012345) == "0.0123" and fmt(1234.5, 2) == "1.2e+03"


def test_machine_info_says_where_the_figures_were_taken() -> None:
    info = machine_info("cpu")
    assert set(info) == {"cpu_model", "cpu_count", "torch_threads", "device", "torch"}
    assert info["torch_threads"] == torch.get_num_threads() and info["device"] == "cpu"
