"""Fused GPU kernels for FAVOR+ (Triton); seqstruct.attention.favor stays the reference and the CPU path.

Importing this package imports no Triton: `choose_kernel` decides which implementation a call gets, and
`seqstruct.attention.kernels.favor` (imported only when the Triton one is chosen) holds the kernels'
entry point, `favor_triton`.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch
from torch import Tensor

KERNELS = ("auto", "torch", "triton")


@functools.cache
def triton_importable() -> bool:
    """Whether the `triton` package is installed (the `kernels` extra); not whether a GPU is there."""
    return importlib.util.find_spec("triton") is not None


def _unusable(q: Tensor, k: Tensor) -> str | None:
    """Why the Triton kernels cannot take these inputs, or None if they can."""
    if not triton_importable():
        return "triton is not installed (pip install 'seqstruct[kernels]')"
    if q.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return f"its inputs are on {q.device.type}, and the kernels run on CUDA (or under TRITON_INTERPRET=1)"
    if q.dtype not in (torch.float32, torch.bfloat16):
        return f"the kernels take float32 or bfloat16, got {q.dtype}"
    if q.shape[2] != k.shape[2]:
        return f"the kernels need as many queries as keys, got {q.shape[2]} and {k.shape[2]}"
    return None


def choose_kernel(kernel: str, q: Tensor, k: Tensor) -> str:
    """ "torch" or "triton" for a call with these inputs: "auto" is Triton on CUDA when it is installed
    and the inputs suit it, the PyTorch path otherwise; "triton" is refused with the reason when the
    kernels cannot run."""
    if kernel not in KERNELS:
        raise ValueError(f"favor kernel must be one of {KERNELS}, got {kernel!r}")
    if kernel == "torch":
        return "torch"
    why = _unusable(q, k)
    if kernel == "triton" and why is not None:
        raise ValueError(f"favor kernel 'triton' cannot run: {why}")
    if kernel == "auto" and (why is not None or q.device.type != "cuda"):
        return "torch"
    return "triton"
