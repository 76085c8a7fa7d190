"""What every benchmark shares: the machine it ran on, step timing, number cells and the files it writes.

One home for these, so that the attention, FAVOR+ error, throughput, encode and batching benchmarks
describe a machine, time a step and format a number the same way.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from seqstruct.io import atomic_open


def pyplot() -> Any:
    """matplotlib on demand: the attention benchmark's child processes import the modules but never plot."""
    import matplotlib

    matplotlib.use("Agg")  # headless: benchmarks run on servers
    import matplotlib.pyplot as plt

    return plt


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    """`payload` as indented JSON with a final newline, written atomically."""
    with atomic_open(path, "w") as handle:
        json.dump(payload, handle, indent=2)
        handle.write("\n")


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """`rows` as CSV, the first row's keys the header, written atomically."""
    with atomic_open(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def fmt(value: float | None, digits: int = 3) -> str:
    """A table cell: `digits` significant digits, "—" for a value not measured (None or NaN)."""
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def cpu_model(cpuinfo: str) -> str:
    """The processor name in the text of /proc/cpuinfo; "" when it names none (some ARM kernels)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return ""


def machine_info(device: str) -> dict[str, Any]:
    """What the timings depend on: processor, threads torch uses (left at its default), device, torch.
    Each benchmark adds what else its figures depend on (Python, transformers, the accelerator's name)."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:  # not Linux
        cpuinfo = ""
    return {
        "cpu_model": cpu_model(cpuinfo) or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "torch": torch.__version__,
    }


def sync(device: str | torch.device) -> None:
    """Wait for queued CUDA work, so that a wall-clock reading covers the computation, not its launch."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


class StepTimer(TrainerCallback):
    """Wall time of optimiser steps after the first `warmup` (allocator and thread-pool start-up)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.times, self._start = warmup, [], 0.0

    def on_step_begin(self, args, state, control, **kwargs) -> None:  # noqa: ANN001
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs) -> None:  # noqa: ANN001
        if state.global_step > self.warmup:
            self.times.append(time.perf_counter() - self._start)
