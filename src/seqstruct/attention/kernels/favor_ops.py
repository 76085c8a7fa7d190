"""FAVOR+ as four Triton kernels: the key state, the output, the query state of the gradient, and the gradients.

The maths is that of seqstruct.attention.favor (read its docstring first); the kernels differ from it in
one choice, the stabiliser. Each random feature i keeps its own key stabiliser μ_i, the running maximum
over the keys seen so far of its exponent e_ji = w_i·k_j − (s/2)|k_j|², so that key features
exp(e_ji − μ_i) ≤ 1 and every state entry is a sum of numbers ≤ 1. A query t then weighs feature i by
exp(w_i·q_t + μ_i − r_t), where r_t = max_i (w_i·q_t + μ_i) is its row stabiliser: the product of the
two factors is exp(w_i·q_t + e_ji − r_t) whatever μ is, so μ and r cancel in the row normalisation like
the PyTorch path's stabilisers, and nothing exceeds 1 before it is summed. Per-feature μ lets a program
own a block of features without agreeing on one maximum with the others.

Sequences. A "sequence" is a batch row (dense [B, H, L, d] inputs, optional key-padding mask) or a token
range of a packed [1, H, T, d] input (cu_seqlens). Tokens are processed in chunks of BLOCK_L; chunk
programs find their sequence through `chunk_seq` (−1: an unused slot of the upper-bound grid), state
programs walk one sequence's chunks in order. Nothing is computed for padding between packed sequences.

Causal attention is a chunked scan: the key-state kernel stores, for every chunk, the state of all
earlier chunks (in the reference μ of the chunk's end); the output kernel adds the chunk's own keys as a
c×c lower-triangular product. The backward pass mirrors it with suffix sums of the query side.

Precision: matrix products take the input dtype (bf16 on tensor cores; fp32 as "ieee" or "tf32" by
torch's float32 matmul precision) and accumulate in fp32; exponents, states, normalisers and all
element-wise work are fp32. Under TRITON_INTERPRET=1 (CPU tests) `tl.dot` multiplies bf16 bit patterns
(triton-lang/triton#11584: the interpreter does not support bf16 arithmetic), so `_dot` rounds the
operands to the input dtype and multiplies them as fp32 there: the products of bf16 values are exact in
fp32, which is what the tensor cores compute.

Layouts: q, k, v, out, grad [B, H, T, d] with any strides but a unit one on d; the batch stride is 0
for packed inputs. States [H, n_idx, m, d_v] (z, μ: [H, n_idx, m]) fp32, n_idx = chunks (causal) or
sequences (bidirectional). Normaliser and row stabiliser [B, H, T] fp32.
"""

from __future__ import annotations

import triton
import triton.language as tl

# Initial running maximum: finite, so that a feature no key has reached gives exp(−inf − FLOOR) = 0.
# (Compiled kernels read module globals only as constexprs.)
FLOOR = tl.constexpr(-1e30)
# Gradient floor on the normaliser (favor.py's _GRAD_FLOOR): damps instead of overflowing.
GRAD_FLOOR = tl.constexpr(1e-30)


@triton.jit
def _dot(a, b, DT: tl.constexpr, PREC: tl.constexpr, INTERPRET: tl.constexpr):
    """a @ b with operands rounded to DT and an fp32 accumulator (see the module docstring)."""
    a = a.to(DT)
    b = b.to(DT)
    if INTERPRET:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, input_precision=PREC, out_dtype=tl.float32)


@triton.jit
def _rows(ptr, base, rows, row_ok, stride_t, cols, col_ok):
    """A [rows, cols] tile of a [.., T, d] tensor (zeros outside), in its own dtype."""
    return tl.load(
        ptr + base + rows[:, None] * stride_t + cols[None, :],
        mask=row_ok[:, None] & col_ok[None, :],
        other=0.0,
    )


@triton.jit
def _state_offsets(slot, m, d_v, feats, f_ok, cols, col_ok):
    """Offsets and mask of a [BLOCK_M, BLOCK_DV] tile of state slot `slot` (= head·n_idx + index)."""
    offsets = (slot.to(tl.int64) * m + feats[:, None]) * d_v + cols[None, :]  # > 2^31 past L ~ 500k causal
    return offsets, f_ok[:, None] & col_ok[None, :]


@triton.jit
def _key_ok(mask_ptr, mask_base, rows, row_ok, stride_mt, HAS_MASK: tl.constexpr):
    """Which rows are real keys: inside the sequence and, with a key-padding mask, unmasked."""
    ok = row_ok
    if HAS_MASK:
        ok = ok & (tl.load(mask_ptr + mask_base + rows * stride_mt, mask=row_ok, other=0) != 0)
    return ok


@triton.jit
def _key_exponents(
    kx, w, half_s, key_ok, f_ok, DT: tl.constexpr, PREC: tl.constexpr, INTERPRET: tl.constexpr
):
    """e = k Wᵀ − (s/2)|k|², −inf for padded keys and absent features. kx [L, D], w [M, D] -> [L, M]."""
    kf32 = kx.to(tl.float32)
    e = _dot(kx, tl.trans(w), DT, PREC, INTERPRET) - half_s * tl.sum(kf32 * kf32, 1)[:, None]
    return tl.where(key_ok[:, None] & f_ok[None, :], e, float("-inf"))


@triton.jit
def key_state_kernel(
    k_ptr, v_ptr, wk_ptr, mask_ptr, seq_start_ptr, seq_len_ptr, cu_chunks_ptr,
    s_ptr, z_ptr, mu_ptr,
    skb, skh, skt, svb, svh, svt, smb, smt,
    n_idx, splits, m, d_k, d_v, half_s,
    CAUSAL: tl.constexpr, HAS_MASK: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr, DT: tl.constexpr, PREC: tl.constexpr,
    INTERPRET: tl.constexpr,
):  # fmt: skip
    """Grid (sequences, heads, feature blocks × splits). S = Σ_j exp(e_j − μ) v_jᵀ, z = Σ_j exp(e_j − μ)
    over the sequence's keys with the running per-feature maximum μ; causal (splits = 1): the state
    before each chunk, in the μ of the chunk's end, one slot per chunk; bidirectional: the sum over the
    split's share of the chunks, one slot per (sequence, split), for the caller to combine."""
    seq = tl.program_id(0)
    head = tl.program_id(1)
    split = tl.program_id(2) % splits
    feats = (tl.program_id(2) // splits) * BLOCK_M + tl.arange(0, BLOCK_M)
    f_ok = feats < m
    start = tl.load(seq_start_ptr + seq).to(tl.int64)
    length = tl.load(seq_len_ptr + seq)
    first = tl.load(cu_chunks_ptr + seq)
    n_chunks = tl.cdiv(length, BLOCK_L)
    share = tl.cdiv(n_chunks, splits)
    ck = tl.arange(0, BLOCK_DK)
    cv = tl.arange(0, BLOCK_DV)
    w = tl.load(
        wk_ptr + feats[:, None] * d_k + ck[None, :], mask=f_ok[:, None] & (ck < d_k)[None, :], other=0.0
    )
    k_base = seq.to(tl.int64) * skb + head.to(tl.int64) * skh + start * skt
    v_base = seq.to(tl.int64) * svb + head.to(tl.int64) * svh + start * svt
    mask_base = seq.to(tl.int64) * smb + start * smt
    state = tl.zeros((BLOCK_M, BLOCK_DV), dtype=tl.float32)
    z = tl.zeros((BLOCK_M,), dtype=tl.float32)
    mu = tl.full((BLOCK_M,), FLOOR, dtype=tl.float32)
    for c in range(split * share, tl.minimum(n_chunks, (split + 1) * share)):
        rows = c * BLOCK_L + tl.arange(0, BLOCK_L)
        row_ok = rows < length
        kx = _rows(k_ptr, k_base, rows, row_ok, skt, ck, ck < d_k)
        ok = _key_ok(mask_ptr, mask_base, rows, row_ok, smt, HAS_MASK)
        e = _key_exponents(kx, w, half_s, ok, f_ok, DT, PREC, INTERPRET)
        new = tl.maximum(mu, tl.max(e, 0))
        scale = tl.exp(mu - new)
        state = state * scale[:, None]
        z = z * scale
        if CAUSAL:  # what the chunk's queries see of earlier chunks, in the reference they use
            slot = head * n_idx + first + c
            offsets, ok_s = _state_offsets(slot, m, d_v, feats, f_ok, cv, cv < d_v)
            tl.store(s_ptr + offsets, state, mask=ok_s)
            tl.store(z_ptr + slot * m + feats, z, mask=f_ok)
            tl.store(mu_ptr + slot * m + feats, new, mask=f_ok)
        kf = tl.exp(e - new[None, :])  # [L, M], <= 1
        vx = _rows(v_ptr, v_base, rows, row_ok, svt, cv, cv < d_v)
        state += _dot(tl.trans(kf), vx, DT, PREC, INTERPRET)
        z += tl.sum(kf, 0)
        mu = new
    if not CAUSAL:
        slot = (head * n_idx + seq) * splits + split
        offsets, ok_s = _state_offsets(slot, m, d_v, feats, f_ok, cv, cv < d_v)
        tl.store(s_ptr + offsets, state, mask=ok_s)
        tl.store(z_ptr + slot * m + feats, z, mask=f_ok)
        tl.store(mu_ptr + slot * m + feats, mu, mask=f_ok)


@triton.jit
def output_kernel(
    q_ptr, k_ptr, v_ptr, wq_ptr, wk_ptr, mask_ptr, seq_start_ptr, seq_len_ptr, cu_chunks_ptr, chunk_seq_ptr,
    s_ptr, z_ptr, mu_ptr, out_ptr, den_ptr, r_ptr,
    sqb, sqh, sqt, skb, skh, skt, svb, svh, svt, smb, smt, sob, soh, sot, snb, snh, snt,
    n_idx, m, d_k, d_v, half_s,
    CAUSAL: tl.constexpr, HAS_MASK: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr, DT: tl.constexpr, PREC: tl.constexpr,
    INTERPRET: tl.constexpr,
):  # fmt: skip
    """Grid (chunk slots, heads). out = Σ_i φ_i S_i / Σ_i φ_i z_i over feature blocks, the row
    stabiliser r kept online as in flash attention (features play the keys); causal adds the chunk's
    own keys, t >= j. Writes out, the normaliser (exact zeros as 1) and r."""
    g = tl.program_id(0)
    head = tl.program_id(1)
    seq = tl.load(chunk_seq_ptr + g)
    if seq < 0:
        return
    start = tl.load(seq_start_ptr + seq).to(tl.int64)
    length = tl.load(seq_len_ptr + seq)
    c = g - tl.load(cu_chunks_ptr + seq)
    rows = c * BLOCK_L + tl.arange(0, BLOCK_L)
    row_ok = rows < length
    ck = tl.arange(0, BLOCK_DK)
    cv = tl.arange(0, BLOCK_DV)
    b64 = seq.to(tl.int64)
    h64 = head.to(tl.int64)
    qx = _rows(q_ptr, b64 * sqb + h64 * sqh + start * sqt, rows, row_ok, sqt, ck, ck < d_k)
    if CAUSAL:
        slot = head * n_idx + g
        kx = _rows(k_ptr, b64 * skb + h64 * skh + start * skt, rows, row_ok, skt, ck, ck < d_k)
        vx = _rows(v_ptr, b64 * svb + h64 * svh + start * svt, rows, row_ok, svt, cv, cv < d_v)
        key_ok = _key_ok(mask_ptr, b64 * smb + start * smt, rows, row_ok, smt, HAS_MASK)
        causal = rows[:, None] >= rows[None, :]
    else:
        slot = head * n_idx + seq
    acc = tl.zeros((BLOCK_L, BLOCK_DV), dtype=tl.float32)
    den = tl.zeros((BLOCK_L,), dtype=tl.float32)
    r = tl.full((BLOCK_L,), float("-inf"), dtype=tl.float32)
    for fb in range(0, tl.cdiv(m, BLOCK_M)):
        feats = fb * BLOCK_M + tl.arange(0, BLOCK_M)
        f_ok = feats < m
        w_mask = f_ok[:, None] & (ck < d_k)[None, :]
        wq = tl.load(wq_ptr + feats[:, None] * d_k + ck[None, :], mask=w_mask, other=0.0)
        mu = tl.load(mu_ptr + slot * m + feats, mask=f_ok, other=0.0)
        a = _dot(qx, tl.trans(wq), DT, PREC, INTERPRET) + mu[None, :]
        a = tl.where(f_ok[None, :], a, float("-inf"))
        new = tl.maximum(r, tl.max(a, 1))
        alpha = tl.exp(r - new)
        phi = tl.exp(a - new[:, None])  # [L, M], <= 1
        offsets, ok_s = _state_offsets(slot, m, d_v, feats, f_ok, cv, cv < d_v)
        state = tl.load(s_ptr + offsets, mask=ok_s, other=0.0)
        z = tl.load(z_ptr + slot * m + feats, mask=f_ok, other=0.0)
        acc = acc * alpha[:, None] + _dot(phi, state, DT, PREC, INTERPRET)
        den = den * alpha + tl.sum(phi * z[None, :], 1)
        if CAUSAL:
            wk = tl.load(wk_ptr + feats[:, None] * d_k + ck[None, :], mask=w_mask, other=0.0)
            kf = tl.exp(_key_exponents(kx, wk, half_s, key_ok, f_ok, DT, PREC, INTERPRET) - mu[None, :])
            scores = tl.where(causal, _dot(phi, tl.trans(kf), DT, PREC, INTERPRET), 0.0)  # [L_t, L_j]
            acc += _dot(scores, vx, DT, PREC, INTERPRET)
            den += tl.sum(scores, 1)
        r = new
    den = tl.where(den > 0, den, 1.0)  # every feature underflowed or padded: output 0, not NaN
    out = acc / den[:, None]
    o_base = b64 * sob + h64 * soh + start * sot
    tl.store(
        out_ptr + o_base + rows[:, None] * sot + cv[None, :],
        out.to(out_ptr.dtype.element_ty),
        mask=row_ok[:, None] & (cv < d_v)[None, :],
    )
    n_base = b64 * snb + h64 * snh + start * snt
    tl.store(den_ptr + n_base + rows * snt, den, mask=row_ok)
    tl.store(r_ptr + n_base + rows * snt, r, mask=row_ok)


@triton.jit
def _grad_rows(g_ptr, o_ptr, den_ptr, g_base, n_base, rows, row_ok, sgt, snt, cv, cv_ok):
    """The gradient w.r.t. [num | den] of out = num/den, per row: gq = g/den [L, DV] and
    gz = −Σ(g·out)/den [L], fp32 (favor.py's _grad_aug)."""
    gx = _rows(g_ptr, g_base, rows, row_ok, sgt, cv, cv_ok).to(tl.float32)
    ox = _rows(o_ptr, g_base, rows, row_ok, sgt, cv, cv_ok).to(tl.float32)
    den = tl.maximum(tl.load(den_ptr + n_base + rows * snt, mask=row_ok, other=1.0), GRAD_FLOOR)
    return gx / den[:, None], -tl.sum(gx * ox, 1) / den


@triton.jit
def query_state_kernel(
    q_ptr, g_ptr, o_ptr, wq_ptr, den_ptr, r_ptr, seq_start_ptr, seq_len_ptr, cu_chunks_ptr,
    mu_ptr, rs_ptr, rz_ptr,
    sqb, sqh, sqt, sgb, sgh, sgt, snb, snh, snt,
    n_idx, splits, m, d_k, d_v,
    CAUSAL: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr, DT: tl.constexpr, PREC: tl.constexpr,
    INTERPRET: tl.constexpr,
):  # fmt: skip
    """Grid (sequences, heads, feature blocks × splits). R = Σ_t φ_t gq_tᵀ and Rz = Σ_t φ_t gz_t, the
    query side of the gradient w.r.t. the key state: bidirectional, the split's share of the total (one
    slot per (sequence, split), all in the final μ: the caller adds them); causal (splits = 1), for each
    chunk the sum over later chunks, walked backwards and kept in the μ of the chunk's end (rescaling by
    exp(μ_c − μ_{c+1}) <= 1)."""
    seq = tl.program_id(0)
    head = tl.program_id(1)
    split = tl.program_id(2) % splits
    feats = (tl.program_id(2) // splits) * BLOCK_M + tl.arange(0, BLOCK_M)
    f_ok = feats < m
    start = tl.load(seq_start_ptr + seq).to(tl.int64)
    length = tl.load(seq_len_ptr + seq)
    first = tl.load(cu_chunks_ptr + seq)
    n_chunks = tl.cdiv(length, BLOCK_L)
    share = tl.cdiv(n_chunks, splits)
    ck = tl.arange(0, BLOCK_DK)
    cv = tl.arange(0, BLOCK_DV)
    w = tl.load(
        wq_ptr + feats[:, None] * d_k + ck[None, :], mask=f_ok[:, None] & (ck < d_k)[None, :], other=0.0
    )
    b64 = seq.to(tl.int64)
    h64 = head.to(tl.int64)
    q_base = b64 * sqb + h64 * sqh + start * sqt
    g_base = b64 * sgb + h64 * sgh + start * sgt
    n_base = b64 * snb + h64 * snh + start * snt
    rs = tl.zeros((BLOCK_M, BLOCK_DV), dtype=tl.float32)
    rz = tl.zeros((BLOCK_M,), dtype=tl.float32)
    if CAUSAL:
        last = head * n_idx + first + tl.maximum(n_chunks - 1, 0)
        previous = tl.load(mu_ptr + last * m + feats, mask=f_ok & (n_chunks > 0), other=0.0)
    else:
        mu = tl.load(mu_ptr + (head * n_idx + seq) * m + feats, mask=f_ok, other=0.0)
    for i in range(split * share, tl.minimum(n_chunks, (split + 1) * share)):
        if CAUSAL:
            c = n_chunks - 1 - i
            slot = head * n_idx + first + c
            mu = tl.load(mu_ptr + slot * m + feats, mask=f_ok, other=0.0)
            scale = tl.exp(mu - previous)
            rs = rs * scale[:, None]
            rz = rz * scale
            offsets, ok_s = _state_offsets(slot, m, d_v, feats, f_ok, cv, cv < d_v)
            tl.store(rs_ptr + offsets, rs, mask=ok_s)
            tl.store(rz_ptr + slot * m + feats, rz, mask=f_ok)
            previous = mu
        else:
            c = i
        rows = c * BLOCK_L + tl.arange(0, BLOCK_L)
        row_ok = rows < length
        qx = _rows(q_ptr, q_base, rows, row_ok, sqt, ck, ck < d_k)
        gq, gz = _grad_rows(g_ptr, o_ptr, den_ptr, g_base, n_base, rows, row_ok, sgt, snt, cv, cv < d_v)
        r = tl.load(r_ptr + n_base + rows * snt, mask=row_ok, other=0.0)
        a = _dot(qx, tl.trans(w), DT, PREC, INTERPRET) + mu[None, :] - r[:, None]
        phi = tl.exp(tl.where(row_ok[:, None] & f_ok[None, :], a, float("-inf")))
        rs += _dot(tl.trans(phi), gq, DT, PREC, INTERPRET)
        rz += tl.sum(phi * gz[:, None], 0)
    if not CAUSAL:
        slot = (head * n_idx + seq) * splits + split
        offsets, ok_s = _state_offsets(slot, m, d_v, feats, f_ok, cv, cv < d_v)
        tl.store(rs_ptr + offsets, rs, mask=ok_s)
        tl.store(rz_ptr + slot * m + feats, rz, mask=f_ok)


@triton.jit
def grad_kernel(
    q_ptr, k_ptr, v_ptr, g_ptr, o_ptr, wq_ptr, wk_ptr, mask_ptr, den_ptr, r_ptr,
    seq_start_ptr, seq_len_ptr, cu_chunks_ptr, chunk_seq_ptr,
    s_ptr, z_ptr, mu_ptr, rs_ptr, rz_ptr, dq_ptr, dk_ptr, dv_ptr,
    sqb, sqh, sqt, skb, skh, skt, svb, svh, svt, sgb, sgh, sgt, smb, smt, snb, snh, snt,
    n_idx, m, d_k, d_v, half_s,
    CAUSAL: tl.constexpr, HAS_MASK: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_DK: tl.constexpr, BLOCK_DV: tl.constexpr, DT: tl.constexpr, PREC: tl.constexpr,
    INTERPRET: tl.constexpr,
):  # fmt: skip
    """Grid (chunk slots, heads). dq, dk, dv of one chunk, over feature blocks:
    dq = Σ_i (gq·S_i + gz z_i) φ_i w_i, dv = Σ_i kf_i R_i, dk = Σ_i (v·R_i + Rz_i) kf_i (w_i − s k),
    with S the key state and R the query state (for causal: of earlier and of later chunks) plus, for
    causal, the chunk's own t >= j pairs. dq, dk, dv are written in the inputs' dtypes (q, k, v
    strides); grad and out share strides, as do the normaliser and the row stabiliser."""
    g = tl.program_id(0)
    head = tl.program_id(1)
    seq = tl.load(chunk_seq_ptr + g)
    if seq < 0:
        return
    start = tl.load(seq_start_ptr + seq).to(tl.int64)
    length = tl.load(seq_len_ptr + seq)
    c = g - tl.load(cu_chunks_ptr + seq)
    rows = c * BLOCK_L + tl.arange(0, BLOCK_L)
    row_ok = rows < length
    ck = tl.arange(0, BLOCK_DK)
    cv = tl.arange(0, BLOCK_DV)
    ck_ok = ck < d_k
    cv_ok = cv < d_v
    b64 = seq.to(tl.int64)
    h64 = head.to(tl.int64)
    q_base = b64 * sqb + h64 * sqh + start * sqt
    k_base = b64 * skb + h64 * skh + start * skt
    v_base = b64 * svb + h64 * svh + start * svt
    n_base = b64 * snb + h64 * snh + start * snt
    qx = _rows(q_ptr, q_base, rows, row_ok, sqt, ck, ck_ok)
    kx = _rows(k_ptr, k_base, rows, row_ok, skt, ck, ck_ok)
    vx = _rows(v_ptr, v_base, rows, row_ok, svt, cv, cv_ok)
    key_ok = _key_ok(mask_ptr, b64 * smb + start * smt, rows, row_ok, smt, HAS_MASK)
    gq, gz = _grad_rows(g_ptr, o_ptr, den_ptr, b64 * sgb + h64 * sgh + start * sgt, n_base, rows, row_ok, sgt, snt, cv, cv_ok)  # fmt: skip
    r = tl.load(r_ptr + n_base + rows * snt, mask=row_ok, other=0.0)
    if CAUSAL:
        slot = head * n_idx + g
        causal = rows[:, None] >= rows[None, :]
        # d loss / d score(t, j) for the chunk's own pairs: gq_t·v_j + gz_t, t >= j.
        pair = tl.where(causal, _dot(gq, tl.trans(vx), DT, PREC, INTERPRET) + gz[:, None], 0.0)
    else:
        slot = head * n_idx + seq
    dq = tl.zeros((BLOCK_L, BLOCK_DK), dtype=tl.float32)
    dk = tl.zeros((BLOCK_L, BLOCK_DK), dtype=tl.float32)
    dv = tl.zeros((BLOCK_L, BLOCK_DV), dtype=tl.float32)
    ksum = tl.zeros((BLOCK_L,), dtype=tl.float32)
    for fb in range(0, tl.cdiv(m, BLOCK_M)):
        feats = fb * BLOCK_M + tl.arange(0, BLOCK_M)
        f_ok = feats < m
        w_mask = f_ok[:, None] & ck_ok[None, :]
        wq = tl.load(wq_ptr + feats[:, None] * d_k + ck[None, :], mask=w_mask, other=0.0)
        wk = tl.load(wk_ptr + feats[:, None] * d_k + ck[None, :], mask=w_mask, other=0.0)
        mu = tl.load(mu_ptr + slot * m + feats, mask=f_ok, other=0.0)
        a = _dot(qx, tl.trans(wq), DT, PREC, INTERPRET) + mu[None, :] - r[:, None]
        phi = tl.exp(tl.where(row_ok[:, None] & f_ok[None, :], a, float("-inf")))  # [L, M]
        kf = tl.exp(_key_exponents(kx, wk, half_s, key_ok, f_ok, DT, PREC, INTERPRET) - mu[None, :])
        offsets, ok_s = _state_offsets(slot, m, d_v, feats, f_ok, cv, cv_ok)
        state = tl.load(s_ptr + offsets, mask=ok_s, other=0.0)
        z = tl.load(z_ptr + slot * m + feats, mask=f_ok, other=0.0)
        rs = tl.load(rs_ptr + offsets, mask=ok_s, other=0.0)
        rz = tl.load(rz_ptr + slot * m + feats, mask=f_ok, other=0.0)
        weight_q = _dot(gq, tl.trans(state), DT, PREC, INTERPRET) + gz[:, None] * z[None, :]  # d/dφ(q)
        weight_k = _dot(vx, tl.trans(rs), DT, PREC, INTERPRET) + rz[None, :]  # d/dφ(k)
        dv += _dot(kf, rs, DT, PREC, INTERPRET)
        if CAUSAL:
            scores = tl.where(causal, _dot(phi, tl.trans(kf), DT, PREC, INTERPRET), 0.0)  # [L_t, L_j]
            dv += _dot(tl.trans(scores), gq, DT, PREC, INTERPRET)
            weight_q += _dot(pair, kf, DT, PREC, INTERPRET)
            weight_k += _dot(tl.trans(pair), phi, DT, PREC, INTERPRET)
        weight_q = weight_q * phi
        weight_k = weight_k * kf
        dq += _dot(weight_q, wq, DT, PREC, INTERPRET)
        dk += _dot(weight_k, wk, DT, PREC, INTERPRET)
        ksum += tl.sum(weight_k, 1)
    dk -= (2.0 * half_s) * kx.to(tl.float32) * ksum[:, None]
    q_mask = row_ok[:, None] & ck_ok[None, :]
    tl.store(dq_ptr + q_base + rows[:, None] * sqt + ck[None, :], dq.to(dq_ptr.dtype.element_ty), mask=q_mask)
    tl.store(dk_ptr + k_base + rows[:, None] * skt + ck[None, :], dk.to(dk_ptr.dtype.element_ty), mask=q_mask)
    v_mask = row_ok[:, None] & cv_ok[None, :]
    tl.store(dv_ptr + v_base + rows[:, None] * svt + cv[None, :], dv.to(dv_ptr.dtype.element_ty), mask=v_mask)
