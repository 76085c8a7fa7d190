"""FAVOR+ through the Triton kernels of `favor_ops`: the autograd Function and the entry point.

`favor_triton` takes what `seqstruct.attention.favor.favor_attention` takes (same maths, same outputs up
to rounding) plus packed variable-length inputs (`cu_seqlens`), and computes in the inputs' dtype (bf16
on the tensor cores) with fp32 accumulators, where the PyTorch path computes everything in fp32. Forward
and backward are both Triton kernels: the forward writes the output, its normaliser and row stabilisers
(and, bidirectional, the [m, d_v] key state of each sequence and head, which the backward reuses); the
causal key states (one per chunk) are recomputed in the backward pass rather than kept, so memory
between the passes is O(L) per head, as for the PyTorch path.

On the CPU the kernels run only under Triton's interpreter (TRITON_INTERPRET=1 set before triton is
imported), which is how the tests check them against the reference functions.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from seqstruct.attention.kernels import favor_ops

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
# Not float16: the key state (sums of up to L values) would overflow its range when rounded for the
# tensor cores at long L; bf16 has float32's range.
_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16}
# Tokens per chunk (the causal block and the unit of work of the chunk kernels) and features per block.
# Chosen without a GPU, by compiling for sm_90 here (scripts/gpu/kernel_resources.py) and taking the
# sizes whose bf16 kernels spill least: 32-feature blocks; 4 warps for the key-state scan, 8 for the rest
# (the gradient kernel still spills 112 B a thread bidirectional, 808 B causal). To be timed on the GPU.
BLOCK_L = 64
BLOCK_M = 32
KEY_STATE_WARPS = 4
WARPS = 8


def _patch_interpreter_index() -> None:
    """Triton 3.6's interpreter turns a runtime scalar (a loop bound) into an int with int() of a
    one-element array, which numpy >= 2.4 refuses (triton-lang/triton#9171, fixed upstream by squeezing
    it first). The same fix, applied to the interpreter alone: compiled kernels never run this code."""
    from triton.runtime import interpreter

    if getattr(interpreter._patch_lang_tensor, "_seqstruct_squeezed", False):
        return
    original = interpreter._patch_lang_tensor

    def patched(tensor, scope) -> None:
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.squeeze()))

    patched._seqstruct_squeezed = True
    interpreter._patch_lang_tensor = patched


if INTERPRET:
    _patch_interpreter_index()


class _Layout(NamedTuple):
    """Where each sequence lies: [S] start token and length, [S+1] first chunk slot of each sequence,
    [slots] the sequence of each chunk slot (−1: unused), S, the number of chunk slots and the most
    chunks of any sequence."""

    seq_start: Tensor
    seq_len: Tensor
    cu_chunks: Tensor
    chunk_seq: Tensor
    sequences: int
    slots: int
    packed: bool
    max_chunks: int
    has_mask: bool = False  # a key-padding mask is given (else the mask argument is a 1×1 placeholder)


def _layout(batch: int, length: int, cu_seqlens: Tensor | None, block: int, device: torch.device) -> _Layout:
    """Dense: one sequence per batch row. Packed: the ranges of cu_seqlens, with an upper bound on the
    chunk count (Σ ceil(len/c) <= T/c + S) for the grid; the longest sequence is read back to the host
    (check_packed has read cu_seqlens already)."""
    as_int = {"dtype": torch.int32, "device": device}
    if cu_seqlens is None:
        chunks = triton.cdiv(length, block)
        return _Layout(
            torch.zeros(batch, **as_int),
            torch.full((batch,), length, **as_int),
            torch.arange(batch + 1, **as_int) * chunks,
            torch.arange(batch * chunks, **as_int) // max(chunks, 1),
            batch,
            batch * chunks,
            False,
            chunks,
        )
    cu = cu_seqlens.to(**as_int)
    lengths = cu[1:] - cu[:-1]
    cu_chunks = torch.cat(
        [cu.new_zeros(1), torch.cumsum((lengths + block - 1) // block, 0, dtype=torch.int32)]
    )
    slots = triton.cdiv(length, block) + lengths.numel()
    chunk_seq = torch.searchsorted(cu_chunks[1:], torch.arange(slots, **as_int), right=True).to(torch.int32)
    chunk_seq = torch.where(chunk_seq < lengths.numel(), chunk_seq, -1)
    longest = int(lengths.max()) if lengths.numel() else 0
    return _Layout(
        cu[:-1].contiguous(),
        lengths,
        cu_chunks,
        chunk_seq,
        lengths.numel(),
        slots,
        True,
        triton.cdiv(longest, block),
    )


def _strides(x: Tensor, packed: bool) -> tuple[int, int, int]:
    """(batch, head, token) strides of a [B, H, T, ...] tensor; batch 0 when packed (B = 1)."""
    return (0 if packed else x.stride(0)), x.stride(1), x.stride(2)


def _precision(dtype: torch.dtype) -> str:
    """fp32 products as torch would do them: exact ("ieee") under float32_matmul_precision "highest",
    else TF32. bf16 products are exact in their fp32 accumulators either way."""
    return "ieee" if dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest" else "tf32"


def _meta(q: Tensor, v: Tensor, causal: bool, has_mask: bool) -> dict:
    return {
        "CAUSAL": causal,
        "BLOCK_L": BLOCK_L,
        "BLOCK_M": BLOCK_M,
        "BLOCK_DK": max(16, triton.next_power_of_2(q.shape[-1])),
        "BLOCK_DV": max(16, triton.next_power_of_2(v.shape[-1])),
        "DT": _DTYPES[q.dtype],
        "PREC": _precision(q.dtype),
        "INTERPRET": INTERPRET,
    } | ({"HAS_MASK": has_mask} if has_mask is not None else {})


def _splits(layout: _Layout, heads: int, m: int, causal: bool, device: torch.device) -> int:
    """Programs per (sequence, head, feature block) of the bidirectional state scans, each over a share
    of the chunks: enough for about 4 programs an SM (one long sequence over 8 heads would otherwise be
    64 programs walking 1,024 chunks each at L = 65,536), at least 4 chunks each. The causal scans are
    sequential (1). Under the interpreter 2, so that the tests cover the combination."""
    if causal or layout.max_chunks < 2:
        return 1
    if INTERPRET:
        return 2
    programs = layout.sequences * heads * triton.cdiv(m, BLOCK_M)
    processors = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(triton.cdiv(4 * processors, programs), layout.max_chunks // 4))


def _key_state(q, k, v, wk, mask, half_s, layout: _Layout, causal: bool):
    """Run key_state_kernel: states S [H, n, m, d_v], z and μ [H, n, m] (n: chunk slots or sequences).
    Bidirectional partial states (one per split) are combined here in the largest of their μ."""
    heads, m = q.shape[1], wk.shape[0]
    splits = _splits(layout, heads, m, causal, q.device)
    n_idx = layout.slots if causal else layout.sequences
    state = q.new_zeros(heads, n_idx * splits, m, v.shape[-1], dtype=torch.float32)
    z = q.new_zeros(heads, n_idx * splits, m, dtype=torch.float32)
    mu = q.new_full((heads, n_idx * splits, m), favor_ops.FLOOR.value, dtype=torch.float32)
    grid = (layout.sequences, heads, triton.cdiv(m, BLOCK_M) * splits)
    favor_ops.key_state_kernel[grid](
        k, v, wk, mask, layout.seq_start, layout.seq_len, layout.cu_chunks, state, z, mu,
        *_strides(k, layout.packed), *_strides(v, layout.packed), *_mask_strides(mask, layout),
        n_idx, splits, m, k.shape[-1], v.shape[-1], half_s,
        **_meta(q, v, causal, layout.has_mask), num_warps=KEY_STATE_WARPS,
    )  # fmt: skip
    if splits == 1:
        return state, z, mu
    mu = mu.view(heads, n_idx, splits, m)
    top = mu.amax(2)  # [H, S, m]
    weight = torch.exp(mu - top.unsqueeze(2))  # <= 1; an empty split (μ = FLOOR, sums 0) adds nothing
    state = (state.view(heads, n_idx, splits, m, -1) * weight.unsqueeze(-1)).sum(2)
    z = (z.view(heads, n_idx, splits, m) * weight).sum(2)
    return state, z, top


def _mask_strides(mask: Tensor, layout: _Layout) -> tuple[int, int]:
    return (mask.stride(0), mask.stride(1)) if layout.has_mask else (0, 0)


class _FavorTriton(torch.autograd.Function):
    """out = D⁻¹ φ(q) (φ(k)ᵀ [v, 1]) over [B, H, T, d] inputs by the Triton kernels; the stabilisers
    are constants to autograd (the output does not depend on them)."""

    @staticmethod
    def forward(ctx, q, k, v, wq, wk, half_s, mask, layout, causal):
        heads, m = q.shape[1], wq.shape[0]
        state, z, mu = _key_state(q, k, v, wk, mask, half_s, layout, causal)
        # Packed: tokens after the last sequence are never written, so they must start at 0.
        out = (q.new_zeros if layout.packed else q.new_empty)(q.shape[:-1] + (v.shape[-1],))
        den = q.new_empty(q.shape[:-1], dtype=torch.float32)
        row_max = torch.empty_like(den)
        n_idx = mu.shape[1]
        favor_ops.output_kernel[(layout.slots, heads)](
            q, k, v, wq, wk, mask, layout.seq_start, layout.seq_len, layout.cu_chunks, layout.chunk_seq,
            state, z, mu, out, den, row_max,
            *_strides(q, layout.packed), *_strides(k, layout.packed), *_strides(v, layout.packed),
            *_mask_strides(mask, layout), *_strides(out, layout.packed), *_strides(den, layout.packed),
            n_idx, m, q.shape[-1], v.shape[-1], half_s,
            **_meta(q, v, causal, layout.has_mask), num_warps=WARPS,
        )  # fmt: skip
        if causal:  # one state per chunk is O(L·m·d_v): recomputed in the backward pass instead
            state = z = mu = None
        ctx.save_for_backward(q, k, v, wq, wk, mask, out, den, row_max, state, z, mu)
        ctx.half_s, ctx.layout, ctx.causal = half_s, layout, causal
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, wq, wk, mask, out, den, row_max, state, z, mu = ctx.saved_tensors
        half_s, layout, causal = ctx.half_s, ctx.layout, ctx.causal
        if causal:
            state, z, mu = _key_state(q, k, v, wk, mask, half_s, layout, causal)
        grad = grad_out.contiguous()  # out's strides, which the kernels read it with
        heads, m = q.shape[1], wq.shape[0]
        n_idx = mu.shape[1]
        splits = _splits(layout, heads, m, causal, q.device)
        rs = state.new_zeros(heads, n_idx * splits, m, state.shape[-1])
        rz = z.new_zeros(heads, n_idx * splits, m)
        grid = (layout.sequences, heads, triton.cdiv(m, BLOCK_M) * splits)
        favor_ops.query_state_kernel[grid](
            q, grad, out, wq, den, row_max, layout.seq_start, layout.seq_len, layout.cu_chunks, mu, rs, rz,
            *_strides(q, layout.packed), *_strides(grad, layout.packed), *_strides(den, layout.packed),
            n_idx, splits, m, q.shape[-1], v.shape[-1],
            **_meta(q, v, causal, None), num_warps=WARPS,
        )  # fmt: skip
        if splits > 1:  # partial sums in one reference (the final μ): added
            rs = rs.view(heads, n_idx, splits, m, -1).sum(2)
            rz = rz.view(heads, n_idx, splits, m).sum(2)
        fresh = torch.zeros_like if layout.packed else torch.empty_like  # as for out
        dq, dk, dv = fresh(q), fresh(k), fresh(v)
        favor_ops.grad_kernel[(layout.slots, heads)](
            q, k, v, grad, out, wq, wk, mask, den, row_max,
            layout.seq_start, layout.seq_len, layout.cu_chunks, layout.chunk_seq,
            state, z, mu, rs, rz, dq, dk, dv,
            *_strides(q, layout.packed), *_strides(k, layout.packed), *_strides(v, layout.packed),
            *_strides(grad, layout.packed), *_mask_strides(mask, layout), *_strides(den, layout.packed),
            n_idx, m, q.shape[-1], v.shape[-1], half_s,
            **_meta(q, v, causal, layout.has_mask), num_warps=WARPS,
        )  # fmt: skip
        return dq, dk, dv, None, None, None, None, None, None


def _dense_like(x: Tensor) -> Tensor:
    """x itself when its last dimension is unit-strided and torch.empty_like reproduces its strides (so
    gradients can be written with x's strides), else a contiguous copy."""
    if x.stride(-1) == 1 and torch.empty_like(x).stride() == x.stride():
        return x
    return x.contiguous()


def check_packed(cu_seqlens: Tensor, batch: int, length: int) -> None:
    """Refuse cu_seqlens that do not describe packed sequences of a [1, H, T, d] input, by name."""
    if batch != 1:
        raise ValueError(f"packed inputs (cu_seqlens) are [1, H, T, d]; got a batch of {batch}")
    if cu_seqlens.ndim != 1 or cu_seqlens.numel() < 2 or cu_seqlens.is_floating_point():
        raise ValueError(f"cu_seqlens must be a 1-D integer tensor [S+1], got {tuple(cu_seqlens.shape)}")
    values = cu_seqlens.tolist()
    if values[0] != 0 or values[-1] > length or any(b < a for a, b in zip(values, values[1:], strict=False)):
        raise ValueError(f"cu_seqlens must rise from 0 to at most T = {length}, got {values[:8]}...")


def favor_triton(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    projection: Tensor,
    *,
    key_mask: Tensor | None = None,
    causal: bool = False,
    scaling: float | None = None,
    balance: float = 1.0,
    cu_seqlens: Tensor | None = None,
) -> Tensor:
    """FAVOR+ attention by the Triton kernels; arguments and result as favor_attention's, plus:

    cu_seqlens [S+1] (int): packed sequences, q/k/v [1, H, T, d] with sequence s at tokens
    cu_seqlens[s]:cu_seqlens[s+1]; attention stays inside each sequence and nothing is computed for
    tokens after the last (their output and gradients are 0). Not combined with key_mask.
    Computes in q's dtype (float32 or bfloat16) with fp32 accumulation; q and k need the same
    length (self-attention). Returns [B, H, T, d_v] in q's dtype.
    """
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(
            f"q, k, v must be [B, H, L, d], got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.dtype not in _DTYPES:
        raise ValueError(f"the Triton FAVOR+ kernels take {sorted(map(str, _DTYPES))}, got {q.dtype}")
    if projection.ndim != 2 or projection.shape[1] != q.shape[-1]:
        raise ValueError(f"projection must be [m, {q.shape[-1]}], got {tuple(projection.shape)}")
    if k.shape[2] != q.shape[2] or v.shape[2] != q.shape[2]:
        raise ValueError(
            f"the Triton FAVOR+ kernels need as many queries as keys, got {q.shape[2]} and {k.shape[2]}"
        )
    if q.device.type != "cuda" and not INTERPRET:
        raise ValueError(
            f"the Triton FAVOR+ kernels run on CUDA tensors (got {q.device.type}); on the CPU only under "
            "TRITON_INTERPRET=1 set before triton is imported"
        )
    if INTERPRET and isinstance(tl.zeros, triton.JITFunction):
        raise RuntimeError(
            "TRITON_INTERPRET=1 was set after triton was imported (transformers imports it): set it "
            "before anything imports torch._dynamo or transformers"
        )
    batch, heads, length, dim = q.shape
    if length == 0 or q.shape[0] == 0:
        raise ValueError(f"empty input: q is {tuple(q.shape)}")
    if k.shape[1] != heads:  # grouped keys/values: shared by their query heads (autograd sums the groups)
        groups = heads // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    if cu_seqlens is not None:
        if key_mask is not None:
            raise ValueError("give packed sequences (cu_seqlens) or a key mask, not both")
        check_packed(cu_seqlens, batch, length)
    if key_mask is not None and key_mask.shape != (batch, length):
        raise ValueError(f"key_mask must be [B, L] = {(batch, length)}, got {tuple(key_mask.shape)}")
    s = dim**-0.5 if scaling is None else float(scaling)
    # The data normaliser √s and the balance are folded into two projections, so the kernels see the
    # inputs as they are: (b q)·W_s = q·(b W_s); (k/b)·W_s − (s/2)|k/b|² = k·(W_s/b) − (s/2b²)|k|².
    scaled = projection.detach().float() * math.sqrt(s)
    wq = (scaled * balance).to(q.dtype).contiguous()
    wk = (scaled / balance).to(q.dtype).contiguous()
    k, v = k.to(q.dtype), v.to(q.dtype)
    # Without a mask the kernels still take a pointer: a real one-byte tensor (an empty tensor's null
    # pointer is refused by Triton's launcher).
    mask = (
        key_mask.to(device=q.device, dtype=torch.int8).contiguous()
        if key_mask is not None
        else torch.ones(1, 1, dtype=torch.int8, device=q.device)
    )
    layout = _layout(batch, length, cu_seqlens, BLOCK_L, q.device)._replace(has_mask=key_mask is not None)
    with torch.autocast(device_type=q.device.type, enabled=False):
        return _FavorTriton.apply(
            _dense_like(q), _dense_like(k), _dense_like(v), wq, wk, s / 2 / balance**2, mask, layout, causal
        )
