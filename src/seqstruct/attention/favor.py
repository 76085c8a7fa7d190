"""FAVOR+ (Choromanski et al., "Rethinking Attention with Performers", ICLR 2021) as pure functions.

softmax(q kᵀ) v is approximated by φ(q) (φ(k)ᵀ v) normalised row-wise, where φ maps a vector to m
positive random features whose inner products estimate exp(q·k) without bias:

    φ(x) = exp(W x − |x|²/2) / √m,     W ∈ R^{m×d}, rows w_i ~ N(0, I_d)  (optionally orthogonal)

Cost is O(L·m·d) in time and O(L·m) in memory instead of O(L²·d) and O(L²); no L×L tensor is built.

Conventions: q, k, v are [B, H, L, d] (the layout transformers' attention functions receive); the
projection W is [m, d] and shared by the heads of one layer; `key_mask` is [B, L], True where a key is
real. `scaling` is the softmax temperature the model asks for (1/√d for BERT; ESM pre-scales its queries
and asks for 1): both q and k are multiplied by √scaling, which is the paper's d^(-1/4) data normaliser.

Stabilisers. Any factor that is constant over a query row cancels in the row normalisation, and so does
any factor common to all keys of a (batch, head). The attention therefore drops −|q|²/2 and 1/√m for
queries and subtracts each query row's maximum, and subtracts the maximum over all (unpadded) keys from
the key exponents: the largest feature is exactly 1, nothing overflows, and the result is unchanged.

Padding. Padded keys are zeroed *after* the feature map, so they leave both the numerator and the
normaliser (performer-pytorch masks before the map: exp(0) still enters the sum), and they never set
the key stabiliser.

The forward and backward passes are hand-written (`torch.autograd.Function`): features are recomputed
chunk by chunk in the backward pass instead of being stored, which is what keeps memory at O(chunk·m)
beyond the inputs; the normaliser rides along the values as an extra column of ones, so numerator and
normaliser come out of one matmul.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

NormScaling = Literal["chi", "sqrt_d"]

# Features materialised at once: 512k floats = 2 MiB per buffer, so the elementwise passes over them
# stay in cache (32 MiB chunks made the backward pass ~15% slower at L=16k on this 2-core CPU).
_CHUNK_ELEMENTS = 1 << 19


def _nonzero(normaliser: Tensor) -> Tensor:
    """The normaliser with exact zeros (every key feature underflowed or padded: the numerator is
    then zero too) replaced by 1, so such a query gets a zero output instead of NaN. Only exact zeros:
    a floor would shrink the outputs of queries whose normaliser is legitimately tiny."""
    return torch.where(normaliser > 0, normaliser, torch.ones_like(normaliser))


# ---------------------------------------------------------------------------------------------------
# Random projections
# ---------------------------------------------------------------------------------------------------


def gaussian_projection(
    num_features: int,
    dim: int,
    *,
    orthogonal: bool = True,
    scaling: NormScaling = "chi",
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draw the projection W [num_features, dim] whose rows are the random frequencies w_i.

    iid: rows ~ N(0, I). Orthogonal: ⌈m/d⌉ independent d×d blocks, each the Q of a Gaussian matrix's QR
    (sign-corrected so Q is Haar-distributed), rows then rescaled to the norm a Gaussian row would have:
    a chi(d) draw ("chi", unbiased, the paper's choice) or exactly √d ("sqrt_d", its regularised option).
    Drawn on the CPU from `generator` so every process that seeds it alike gets the same matrix.
    """
    if num_features < 1 or dim < 1:
        raise ValueError(f"num_features and dim must be positive, got {num_features} and {dim}")
    if scaling not in ("chi", "sqrt_d"):
        raise ValueError(f"scaling must be 'chi' or 'sqrt_d', got {scaling!r}")
    if not orthogonal:
        w = torch.randn(num_features, dim, generator=generator, dtype=torch.float64)
        return w.to(dtype=dtype, device=device)
    blocks = []
    for _ in range(math.ceil(num_features / dim)):
        gaussian = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(gaussian)
        q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # Haar measure, not QR's sign convention
        blocks.append(q.T)  # rows orthonormal
    directions = torch.cat(blocks)[:num_features]  # [m, d]
    if scaling == "chi":
        norms = torch.randn(num_features, dim, generator=generator, dtype=torch.float64).norm(dim=1)
    else:
        norms = torch.full((num_features,), math.sqrt(dim), dtype=torch.float64)
    return (directions * norms.unsqueeze(1)).to(dtype=dtype, device=device)


# ---------------------------------------------------------------------------------------------------
# Stabilised feature maps used by the attention, in a [N = B·H, L, d] layout
# ---------------------------------------------------------------------------------------------------
# The projection arrives pre-multiplied by √scaling (W_s), so W_s q = W (√s q): the data normaliser costs
# nothing, and `half_s` = s/2 completes the key exponent W_s k − (s/2)|k|². Feature buffers are reused
# across chunks: a fresh 32 MiB tensor per chunk costs page faults on first touch every time.


def _take(buffer: Tensor, rows: int) -> Tensor:
    """The first `rows` rows of a [N, chunk, m] workspace, as a contiguous [N, rows, m] tensor."""
    n, _, m = buffer.shape
    return buffer.view(-1)[: n * rows * m].view(n, rows, m)


def _query_features(
    q: Tensor, projection: Tensor, out: Tensor, row_max: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """exp(W_s q − max_i (W_s q)_i) into `out`: φ⁺(q) up to a per-row factor, which cancels. Returns
    the features and the row maxima [N, c, 1]; the backward pass hands back the forward's maxima
    instead of recomputing them. q [N, c, d] -> out [N, c, m]."""
    torch.matmul(q, projection.T, out=out)
    if row_max is None:
        row_max = out.amax(dim=-1, keepdim=True)
    return out.sub_(row_max).exp_(), row_max


def _key_exponents(
    k: Tensor,
    projection: Tensor,
    half_s: float,
    key_mask: Tensor | None,
    out: Tensor,
    stabiliser: Tensor | None = None,
) -> Tensor:
    """W_s k − (s/2)|k|² [− stabiliser] into `out`, padded keys at −inf. Everything subtracted is
    gathered in one [N, c, 1] offset (+inf for padded keys) so the [N, c, m] buffer is touched once.
    k [N, c, d], key_mask [N, c], stabiliser [N, 1, 1] -> out [N, c, m]."""
    offset = half_s * k.pow(2).sum(-1, keepdim=True)  # [N, c, 1]
    if stabiliser is not None:
        offset += stabiliser
    if key_mask is not None:
        offset.masked_fill_(~key_mask.unsqueeze(-1), float("inf"))
    torch.matmul(k, projection.T, out=out)
    return out.sub_(offset)


def _online_key_features(
    k: Tensor,
    projection: Tensor,
    half_s: float,
    key_mask: Tensor | None,
    out: Tensor,
    stabiliser: Tensor,
    *sums: Tensor,
) -> tuple[Tensor, Tensor]:
    """Key features against a running maximum (forward passes, where the global one is not known
    yet): the maximum [N, 1, 1] is raised to cover this chunk, the sums accumulated so far are
    rescaled to the new reference, and the chunk's features are returned with the new maximum.
    The chunk maximum comes from row maxima of W_s k less the [N, c, 1] offsets, so the [N, c, m]
    buffer is read once for it and written once with the features."""
    offset = half_s * k.pow(2).sum(-1, keepdim=True)  # [N, c, 1]
    if key_mask is not None:
        offset.masked_fill_(~key_mask.unsqueeze(-1), float("inf"))
    torch.matmul(k, projection.T, out=out)
    chunk_max = (out.amax(dim=-1, keepdim=True) - offset).amax(dim=1, keepdim=True)  # [N, 1, 1]
    new = torch.maximum(stabiliser, chunk_max)
    factor = torch.exp(stabiliser - new)
    for total in sums:
        total *= factor
    return out.sub_(offset + new).exp_(), new


def _with_ones(v: Tensor) -> Tensor:
    """[..., L, d] -> [..., L, d+1]: the extra column of ones turns the numerator matmul into the
    normaliser's too."""
    return torch.cat([v, v.new_ones(v.shape[:-1] + (1,))], dim=-1)


def _row_chunk(rows: int, length: int, num_features: int) -> int:
    """Tokens per chunk: about _CHUNK_ELEMENTS features per buffer, but never fewer than _MIN_CHUNK
    tokens, or many short sequences (large B·H) would turn the chunk loop into a per-token loop."""
    return max(min(length, _MIN_CHUNK), min(length, _CHUNK_ELEMENTS // max(1, rows * num_features)))


_MIN_CHUNK = 256


def _spans(length: int, chunk: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk, length)) for start in range(0, length, chunk)]


def _mask_slice(key_mask: Tensor | None, start: int, end: int) -> Tensor | None:
    return None if key_mask is None else key_mask[:, start:end]


def _write_normalised(num: Tensor, out: Tensor, normaliser: Tensor, start: int, end: int) -> None:
    """Split num = φ(q)·[KV | ks] [N, c, d+1] into out[:, start:end] = num/den and the normaliser den."""
    normaliser[:, start:end] = _nonzero(num[..., -1:])
    out[:, start:end] = num[..., :-1] / normaliser[:, start:end]


def _grad_aug(grad_out: Tensor, out: Tensor, normaliser: Tensor) -> Tensor:
    """out = num/den: the gradient w.r.t. [num | den] is [g/den | −Σ(g·out)/den], one [N, L, d+1]
    tensor mirroring [v | 1]. A normaliser below _GRAD_FLOOR (a query whose every key feature is
    ~e^-69 of the largest: only at extreme norms) is floored here, in the backward pass only, so its
    gradient is damped instead of overflowing to inf; the forward output is left exact."""
    return torch.cat([grad_out, -(grad_out * out).sum(-1, keepdim=True)], dim=-1) / normaliser.clamp_min(
        _GRAD_FLOOR
    )


_GRAD_FLOOR = 1e-30


# Initial running maximum: finite, so an all-padded prefix gives exp(−inf − (−1e30)) = 0, not NaN.
_FLOOR = -1e30


# ---------------------------------------------------------------------------------------------------
# Bidirectional FAVOR+
# ---------------------------------------------------------------------------------------------------


class _BidirectionalFavor(torch.autograd.Function):
    """out = D⁻¹ φ(q) (φ(k)ᵀ [v, 1]) over [N, L, d] inputs. The backward pass recomputes the features
    chunk by chunk rather than storing them; the key stabiliser is treated as a constant, exact because
    the output does not depend on it."""

    @staticmethod
    def forward(
        ctx, q: Tensor, k: Tensor, v: Tensor, projection: Tensor, half_s: float, key_mask: Tensor | None
    ):
        n, length, _ = q.shape
        chunk = _row_chunk(n, max(length, k.shape[1]), projection.shape[0])
        work = q.new_empty(n, chunk, projection.shape[0])
        v1 = _with_ones(v)  # [N, L, d+1]
        kv = q.new_zeros(n, projection.shape[0], v1.shape[-1])  # Σ φ(k) [v, 1]ᵀ, [N, m, d_v+1]
        stabiliser = q.new_full((n, 1, 1), _FLOOR)
        for start, end in _spans(k.shape[1], chunk):
            mask = _mask_slice(key_mask, start, end)
            kf, stabiliser = _online_key_features(
                k[:, start:end], projection, half_s, mask, _take(work, end - start), stabiliser, kv
            )
            kv.baddbmm_(kf.transpose(1, 2), v1[:, start:end])
        out = q.new_empty(n, length, v.shape[-1])
        normaliser = q.new_empty(n, length, 1)
        q_max = q.new_empty(n, length, 1)  # per-row maxima, reused by the backward pass
        for start, end in _spans(length, chunk):
            qf, q_max[:, start:end] = _query_features(q[:, start:end], projection, _take(work, end - start))
            num = torch.bmm(qf, kv)  # [N, c, d+1]
            _write_normalised(num, out, normaliser, start, end)
        ctx.save_for_backward(q, k, v, projection, key_mask, stabiliser, q_max, kv, out, normaliser)
        ctx.half_s, ctx.chunk = half_s, chunk
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        q, k, v, projection, key_mask, stabiliser, q_max, kv, out, normaliser = ctx.saved_tensors
        n, length, _ = q.shape
        work = q.new_empty(n, ctx.chunk, projection.shape[0])
        grad_work = torch.empty_like(work)
        grad_aug = _grad_aug(grad_out, out, normaliser)
        grad_q = torch.empty_like(q)
        grad_kv = torch.zeros_like(kv)  # [N, m, d+1]
        for start, end in _spans(length, ctx.chunk):
            qf, _ = _query_features(
                q[:, start:end], projection, _take(work, end - start), q_max[:, start:end]
            )
            g = grad_aug[:, start:end]
            grad_kv.baddbmm_(qf.transpose(1, 2), g)
            weighted = torch.bmm(g, kv.transpose(1, 2), out=_take(grad_work, end - start)).mul_(qf)
            grad_q[:, start:end] = weighted @ projection
        grad_k = torch.empty_like(k)
        grad_v = torch.empty_like(v)
        v1 = _with_ones(v)
        for start, end in _spans(k.shape[1], ctx.chunk):
            ks = k[:, start:end]
            mask = _mask_slice(key_mask, start, end)
            kf = _key_exponents(ks, projection, ctx.half_s, mask, _take(work, end - start), stabiliser).exp_()
            grad_v[:, start:end] = torch.bmm(kf, grad_kv[..., :-1])
            # Padded keys have kf = 0, so their gradient vanishes through `weighted` by itself.
            weighted = torch.bmm(
                v1[:, start:end], grad_kv.transpose(1, 2), out=_take(grad_work, end - start)
            ).mul_(kf)
            grad_k[:, start:end] = weighted @ projection - (2 * ctx.half_s) * ks * weighted.sum(
                -1, keepdim=True
            )
        return grad_q, grad_k, grad_v, None, None, None


# ---------------------------------------------------------------------------------------------------
# Causal FAVOR+: chunked prefix sums
# ---------------------------------------------------------------------------------------------------


class _CausalFavor(torch.autograd.Function):
    """Within a chunk of c tokens the causal part is a c×c lower-triangular product; across chunks a
    running state S = Σ φ(k_j) [v_j, 1]ᵀ ([N, m, d+1]) carries the prefix. The backward pass walks the
    chunks forwards (for queries, rebuilding S) and then backwards (for keys and values, with the suffix
    sum R = Σ φ(q_i) gradᵢᵀ), so nothing of size L·m·d is ever stored."""

    @staticmethod
    def forward(
        ctx,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        projection: Tensor,
        half_s: float,
        key_mask: Tensor | None,
        chunk: int,
    ):
        n, length, dim = q.shape
        m = projection.shape[0]
        v1 = _with_ones(v)
        state = q.new_zeros(n, m, v1.shape[-1])  # [N, m, d_v+1]
        stabiliser = q.new_full((n, 1, 1), _FLOOR)
        out = q.new_empty(n, length, v.shape[-1])
        normaliser = q.new_empty(n, length, 1)
        q_work, k_work = q.new_empty(n, chunk, m), q.new_empty(n, chunk, m)
        upper = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).triu(1)
        spans = _spans(length, chunk)
        history = q.new_empty(len(spans), n, 1, 1)  # the running stabiliser each chunk was normalised with
        q_max = q.new_empty(n, length, 1)
        for index, (start, end) in enumerate(spans):
            c = end - start
            mask = _mask_slice(key_mask, start, end)
            kf, stabiliser = _online_key_features(
                k[:, start:end], projection, half_s, mask, _take(k_work, c), stabiliser, state
            )
            history[index] = stabiliser
            qf, q_max[:, start:end] = _query_features(q[:, start:end], projection, _take(q_work, c))
            vs = v1[:, start:end]
            local = torch.bmm(qf, kf.transpose(1, 2)).masked_fill_(upper[:c, :c], 0.0)  # [N, c, c]
            num = torch.bmm(qf, state).baddbmm_(local, vs)  # [N, c, d+1]
            _write_normalised(num, out, normaliser, start, end)
            state.baddbmm_(kf.transpose(1, 2), vs)
        ctx.save_for_backward(q, k, v, projection, key_mask, stabiliser, history, q_max, out, normaliser)
        ctx.half_s, ctx.chunk = half_s, chunk
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        q, k, v, projection, key_mask, stabiliser, history, q_max, out, normaliser = ctx.saved_tensors
        chunk, half_s = ctx.chunk, ctx.half_s
        n, length, _ = q.shape
        m = projection.shape[0]
        v1 = _with_ones(v)
        # Chunk c was computed against the running key stabiliser μ_c (non-decreasing in c); both walks
        # keep every sum in the current chunk's reference, rescaling by exp(μ_before − μ_after) <= 1 when
        # they move on, exactly as the forward pass did, so nothing overflows and the normalisers saved
        # by the forward pass stay consistent with the recomputed features.
        spans = _spans(length, chunk)
        grad_aug = _grad_aug(grad_out, out, normaliser)
        upper = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).triu(1)
        q_work, k_work = q.new_empty(n, chunk, m), q.new_empty(n, chunk, m)

        def features(index: int) -> tuple[Tensor, Tensor]:
            start, end = spans[index]
            c = end - start
            mask = _mask_slice(key_mask, start, end)
            kf = _key_exponents(
                k[:, start:end], projection, half_s, mask, _take(k_work, c), history[index]
            ).exp_()
            qf, _ = _query_features(q[:, start:end], projection, _take(q_work, c), q_max[:, start:end])
            return qf, kf

        grad_q = torch.empty_like(q)
        state = q.new_zeros(n, m, v1.shape[-1])
        for index, (start, end) in enumerate(spans):
            if index:
                state *= torch.exp(history[index - 1] - history[index])
            qf, kf = features(index)
            g, vs = grad_aug[:, start:end], v1[:, start:end]
            pair = torch.bmm(g, vs.transpose(1, 2)).masked_fill_(upper[: end - start, : end - start], 0.0)
            weighted = (
                torch.bmm(g, state.transpose(1, 2)).baddbmm_(pair, kf).mul_(qf)
            )  # d out / d φ(q), ⊙ φ(q)
            grad_q[:, start:end] = weighted @ projection
            state.baddbmm_(kf.transpose(1, 2), vs)

        grad_k = torch.empty_like(k)
        grad_v = torch.empty_like(v)
        suffix = torch.zeros_like(state)  # R = Σ_{later i} φ(q_i) g_iᵀ, [N, m, d_v+1]
        for index in reversed(range(len(spans))):
            start, end = spans[index]
            qf, kf = features(index)
            g, vs = grad_aug[:, start:end], v1[:, start:end]
            lower_out = upper[: end - start, : end - start]
            scores = torch.bmm(qf, kf.transpose(1, 2)).masked_fill_(lower_out, 0.0)  # [N, c_i, c_j]
            grad_v[:, start:end] = torch.bmm(scores.transpose(1, 2), g[..., :-1]).baddbmm_(
                kf, suffix[..., :-1]
            )
            pair = torch.bmm(g, vs.transpose(1, 2)).masked_fill_(lower_out, 0.0)  # [N, c_i, c_j]
            weighted = torch.bmm(pair.transpose(1, 2), qf).baddbmm_(vs, suffix.transpose(1, 2)).mul_(kf)
            ks = k[:, start:end]
            grad_k[:, start:end] = weighted @ projection - (2 * half_s) * ks * weighted.sum(-1, keepdim=True)
            suffix.baddbmm_(qf.transpose(1, 2), g)
            if index:
                suffix *= torch.exp(history[index - 1] - history[index])
        return grad_q, grad_k, grad_v, None, None, None, None


# ---------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------


def favor_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    projection: Tensor,
    *,
    key_mask: Tensor | None = None,
    causal: bool = False,
    scaling: float | None = None,
    chunk_size: int = 128,
    balance: float = 1.0,
    kernel: str = "torch",
    cu_seqlens: Tensor | None = None,
) -> Tensor:
    """FAVOR+ attention approximating softmax(scaling · q kᵀ) v.

    q, k, v [B, H, L, d] (k and v may have fewer heads, shared by groups of query heads); projection
    [m, d]; key_mask [B, L] bool, True for real keys; scaling defaults to 1/√d. `causal` restricts
    position i to keys ≤ i, computed chunk by chunk (`chunk_size` tokens) with a running prefix state.
    `balance` multiplies q and divides k, leaving q·k unchanged: the estimator's variance grows with
    |q|² + |k|², so a model that folds the whole 1/√d into q (ESM) is evened out with balance = d^(1/4).
    Computed in float32 whatever the input dtype (the exponentials need it); returns q's dtype,
    [B, H, L, d_v].

    `kernel` "triton" (or "auto" on CUDA) hands the call to the fused kernels of
    seqstruct.attention.kernels, which compute in the inputs' dtype with fp32 accumulators and also take
    packed sequences (`cu_seqlens` [S+1], q/k/v [1, H, T, d]); "torch" (the default) is this module.
    """
    if kernel != "torch":
        from seqstruct.attention.kernels import choose_kernel

        if choose_kernel(kernel, q, k) == "triton":
            from seqstruct.attention.kernels.favor import favor_triton

            return favor_triton(
                q, k, v, projection, key_mask=key_mask, causal=causal, scaling=scaling, balance=balance,
                cu_seqlens=cu_seqlens,
            )  # fmt: skip
    if cu_seqlens is not None:
        raise ValueError("packed sequences (cu_seqlens) need the Triton kernels: kernel='triton'")
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(
            f"q, k, v must be [B, H, L, d], got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if projection.ndim != 2 or projection.shape[1] != q.shape[-1]:
        raise ValueError(f"projection must be [m, {q.shape[-1]}], got {tuple(projection.shape)}")
    if key_mask is not None and key_mask.shape != (k.shape[0], k.shape[2]):
        raise ValueError(f"key_mask must be [B, L] = {(k.shape[0], k.shape[2])}, got {tuple(key_mask.shape)}")
    if k.shape[1] != q.shape[1]:  # grouped keys/values: share them across their query heads
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    if causal and q.shape[2] != k.shape[2]:
        raise ValueError(f"causal attention needs as many queries as keys, got {q.shape[2]} and {k.shape[2]}")
    batch, heads, length, dim = q.shape
    s = dim**-0.5 if scaling is None else float(scaling)
    out_dtype = q.dtype
    with torch.autocast(device_type=q.device.type, enabled=False):
        # [B, H, L, d] -> [B·H, L, d]; the data normaliser √s is folded into the projection.
        qs, ks, vs = (x.float().reshape(batch * heads, x.shape[2], x.shape[-1]) for x in (q, k, v))
        if balance != 1.0:
            qs, ks = qs * balance, ks / balance
        proj = projection.float() * math.sqrt(s)
        mask = None
        if key_mask is not None:
            mask = (
                key_mask.to(torch.bool)[:, None, :]
                .expand(batch, heads, k.shape[2])
                .reshape(batch * heads, k.shape[2])
            )
        if causal:
            out = _CausalFavor.apply(qs, ks, vs, proj, s / 2, mask, min(chunk_size, length))
        else:
            out = _BidirectionalFavor.apply(qs, ks, vs, proj, s / 2, mask)
    return out.view(batch, heads, length, -1).to(out_dtype)
