"""FAVOR+ maths: projections, feature maps, the stabilised attention against references, gradients,
padding, causality and numerical stability. Shapes are tiny: every test runs in well under a second."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seqstruct.attention import favor
from seqstruct.attention.favor import _BidirectionalFavor, _CausalFavor, favor_attention, gaussian_projection
from seqstruct.attention.reference import (
    kernel_attention,
    positive_features,
    softmax_attention,
    trigonometric_features,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from threads; on a busy machine OpenMP's spin-waits make each of the
    many small QR and matmul calls up to 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _qkv(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float32, scale: float = 1.0):
    """q, k (times `scale`) and v drawn from one seeded generator."""
    g = _generator(seed)
    q, k, v = (torch.randn(*shape, generator=g, dtype=torch.float64) for _ in range(3))
    return (q * scale).to(dtype), (k * scale).to(dtype), v.to(dtype)


def _at_norm(x: torch.Tensor, norm: float) -> torch.Tensor:
    """Rescale every row of x to the given Euclidean norm."""
    return x / x.norm(dim=-1, keepdim=True) * norm


def _lengths_mask(lengths: list[int], length: int) -> torch.Tensor:
    """[B, L] key mask, True for the first lengths[b] positions (right padding)."""
    return torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]


def _reference(q, k, v, projection, *, key_mask=None, causal=False, scaling=None):
    """Unstabilised FAVOR+ straight from the definition: φ⁺ features of √s·q and √s·k, an explicit L×L
    matrix of kernel estimates, padded keys and (causal) future keys zeroed, rows normalised.
    q, k, v [B, H, L, d] -> [B, H, L, d_v]; differentiable by autograd."""
    s = q.shape[-1] ** -0.5 if scaling is None else scaling
    qf = positive_features(q * math.sqrt(s), projection)  # [B, H, L, m]
    kf = positive_features(k * math.sqrt(s), projection)
    weights = qf @ kf.transpose(-2, -1)  # [B, H, L, L]
    if key_mask is not None:
        weights = weights * key_mask[:, None, None, :].to(weights.dtype)
    if causal:
        weights = weights.tril()
    return (weights @ v) / weights.sum(-1, keepdim=True)


def _logspace_reference(q, k, v, projection, *, causal=False, scaling=None):
    """The same estimator as `_reference`, computed in log space (logsumexp over features, softmax over
    keys) so that it stays exact for inputs whose features under- or overflow. float64, [B, H, L, d]."""
    s = q.shape[-1] ** -0.5 if scaling is None else scaling
    qs, ks = q * math.sqrt(s), k * math.sqrt(s)
    log_q = qs @ projection.T - 0.5 * qs.pow(2).sum(-1, keepdim=True)  # log φ⁺ + log √m, [B, H, L, m]
    log_k = ks @ projection.T - 0.5 * ks.pow(2).sum(-1, keepdim=True)
    log_kernel = torch.logsumexp(log_q.unsqueeze(-2) + log_k.unsqueeze(-3), dim=-1)  # [B, H, L, L]
    if causal:
        length = q.shape[-2]
        future = torch.ones(length, length, dtype=torch.bool).triu(1)
        log_kernel = log_kernel.masked_fill(future, float("-inf"))
    return torch.softmax(log_kernel, dim=-1) @ v


# ---------------------------------------------------------------------------------------------------
# gaussian_projection
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("orthogonal", [True, False])
@pytest.mark.parametrize("num_features", [1, 5, 8, 20])
def test_projection_shape_and_dtype(orthogonal: bool, num_features: int) -> None:
    w = gaussian_projection(num_features, 8, orthogonal=orthogonal, generator=_generator(0))
    assert w.shape == (num_features, 8) and w.dtype == torch.float32
    w64 = gaussian_projection(num_features, 8, orthogonal=orthogonal, dtype=torch.float64, device="cpu")
    assert w64.dtype == torch.float64 and w64.device.type == "cpu"
    assert torch.isfinite(w).all()


def test_orthogonal_rows_are_orthogonal_within_each_block() -> None:
    d = 8
    w = gaussian_projection(20, d, generator=_generator(1), dtype=torch.float64)  # blocks of 8, 8, 4
    directions = w / w.norm(dim=1, keepdim=True)
    for start in range(0, 20, d):
        block = directions[start : start + d]
        gram = block @ block.T
        torch.testing.assert_close(gram, torch.eye(len(block), dtype=torch.float64), atol=1e-12, rtol=0)
    # The property is not automatic: iid rows are far from orthogonal.
    iid = gaussian_projection(8, d, orthogonal=False, generator=_generator(1), dtype=torch.float64)
    iid = iid / iid.norm(dim=1, keepdim=True)
    assert (iid @ iid.T - torch.eye(d, dtype=torch.float64)).abs().max() > 0.1


def test_sqrt_d_scaling_gives_norm_sqrt_d_and_chi_matches_gaussian_norms() -> None:
    d = 8
    fixed = gaussian_projection(20, d, scaling="sqrt_d", generator=_generator(2), dtype=torch.float64)
    torch.testing.assert_close(
        fixed.norm(dim=1), torch.full((20,), math.sqrt(d), dtype=torch.float64), atol=1e-12, rtol=0
    )
    chi = gaussian_projection(4096, d, scaling="chi", generator=_generator(2), dtype=torch.float64)
    squared = chi.pow(2).sum(1)
    assert squared.std() > 1.0  # chi(d) norms vary from row to row
    assert abs(squared.mean().item() - d) < 0.4  # E|w|² = d, as for a Gaussian row (sd of mean ≈ 0.06)


@pytest.mark.parametrize("orthogonal", [True, False])
def test_seeded_generator_is_reproducible(orthogonal: bool) -> None:
    a = gaussian_projection(12, 4, orthogonal=orthogonal, generator=_generator(7))
    b = gaussian_projection(12, 4, orthogonal=orthogonal, generator=_generator(7))
    c = gaussian_projection(12, 4, orthogonal=orthogonal, generator=_generator(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_features": 0, "dim": 4},
        {"num_features": 4, "dim": 0},
        {"num_features": -1, "dim": 4},
        {"num_features": 4, "dim": 4, "scaling": "unit"},
    ],
)
def test_projection_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        gaussian_projection(**kwargs)


# ---------------------------------------------------------------------------------------------------
# Feature maps
# ---------------------------------------------------------------------------------------------------


def _pairs(seed: int, count: int, dim: int, norm: float) -> tuple[torch.Tensor, torch.Tensor]:
    g = _generator(seed)
    x = torch.randn(count, dim, generator=g, dtype=torch.float64)
    y = torch.randn(count, dim, generator=g, dtype=torch.float64)
    return _at_norm(x, norm), _at_norm(y, norm)


def _mean_estimate(feature_map, x, y, draws: int, num_features: int) -> torch.Tensor:
    """Mean over independent projections of φ(x)·φ(y), one estimate per pair. x, y [P, d] -> [P]."""
    g = _generator(123)
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for _ in range(draws):
        w = gaussian_projection(num_features, x.shape[1], generator=g, dtype=torch.float64)
        total += (feature_map(x, w) * feature_map(y, w)).sum(-1)
    return total / draws


def test_positive_features_are_positive_and_unbiased() -> None:
    x, y = _pairs(0, 6, 4, norm=0.7)
    w = gaussian_projection(32, 4, generator=_generator(0), dtype=torch.float64)
    assert positive_features(x, w).shape == (6, 32)
    # Positive even for larger inputs, where the trigonometric map goes negative.
    big = _at_norm(torch.randn(50, 4, generator=_generator(1), dtype=torch.float64), 4.0)
    assert (positive_features(big, w) > 0).all()
    estimate = _mean_estimate(positive_features, x, y, draws=400, num_features=32)
    torch.testing.assert_close(estimate, torch.exp((x * y).sum(-1)), rtol=0.05, atol=0)


def test_trigonometric_features_are_unbiased() -> None:
    x, y = _pairs(1, 6, 4, norm=0.5)
    w = gaussian_projection(32, 4, generator=_generator(0), dtype=torch.float64)
    assert trigonometric_features(x, w).shape == (6, 32)
    estimate = _mean_estimate(trigonometric_features, x, y, draws=400, num_features=32)
    torch.testing.assert_close(estimate, torch.exp((x * y).sum(-1)), rtol=0.05, atol=0)
    with pytest.raises(ValueError):
        trigonometric_features(x, w[:1])


def test_softmax_reference_agrees_with_torch_sdpa() -> None:
    q, k, v = _qkv((2, 3, 7, 4), seed=0)
    for causal in (False, True):
        expected = F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=1.0)
        torch.testing.assert_close(softmax_attention(q, k, v, causal=causal), expected)


# ---------------------------------------------------------------------------------------------------
# FAVOR+ against exact softmax and against the unstabilised estimator
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
def test_favor_converges_to_softmax_attention(causal: bool) -> None:
    d = 8
    q, k, v = _qkv((1, 2, 16, d), seed=0, scale=0.5)
    data_normaliser = d**-0.25  # favor_attention's default scaling 1/√d, split between q and k
    exact = softmax_attention(q * data_normaliser, k * data_normaliser, v, causal=causal)

    def mean_squared_error(m: int) -> float:
        errors = []
        for seed in range(5):
            w = gaussian_projection(m, d, generator=_generator(100 + seed))
            out = favor_attention(q, k, v, w, causal=causal, chunk_size=5)
            errors.append((out - exact).pow(2).mean().item())
        return sum(errors) / len(errors)

    coarse, fine = mean_squared_error(16), mean_squared_error(1024)
    assert fine < coarse / 8, (coarse, fine)
    assert fine < 2e-3


def test_favor_matches_unstabilised_kernel_attention_float32() -> None:
    d = 8
    q, k, v = _qkv((2, 2, 11, d), seed=1)
    w = gaussian_projection(64, d, generator=_generator(3))
    s = d**-0.25
    expected = kernel_attention(q * s, k * s, v, w)
    torch.testing.assert_close(favor_attention(q, k, v, w), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_stabilised_functions_match_the_definition_float64(causal: bool) -> None:
    # favor_attention computes in float32 whatever its input; the autograd Functions themselves run in
    # the input's dtype, so float64 shows the stabilisers change nothing beyond rounding.
    q, k, v = _qkv((3, 9, 4), seed=2, dtype=torch.float64)  # [N, L, d], projection pre-scaled (s = 1)
    w = gaussian_projection(16, 4, generator=_generator(4), dtype=torch.float64)
    if causal:
        out = _CausalFavor.apply(q, k, v, w, 0.5, None, 4)
        expected = _reference(q[:, None], k[:, None], v[:, None], w, causal=True, scaling=1.0)[:, 0]
    else:
        out = _BidirectionalFavor.apply(q, k, v, w, 0.5, None)
        expected = kernel_attention(q, k, v, w)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-12)


def test_float64_input_returns_float64() -> None:
    q, k, v = _qkv((1, 2, 5, 4), seed=3, dtype=torch.float64)
    w = gaussian_projection(8, 4, generator=_generator(0), dtype=torch.float64)
    out = favor_attention(q, k, v, w)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, _reference(q, k, v, w), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_value_width_may_differ_from_head_width(causal: bool) -> None:
    # The docstring promises [B, H, L, d_v] out, as kernel_attention and softmax_attention allow.
    q, k, _ = _qkv((1, 2, 6, 4), seed=4)
    v = torch.randn(1, 2, 6, 3, generator=_generator(5))
    w = gaussian_projection(16, 4, generator=_generator(0))
    out = favor_attention(q, k, v, w, causal=causal)
    assert out.shape == (1, 2, 6, 3)
    torch.testing.assert_close(out, _reference(q, k, v, w, causal=causal), atol=1e-5, rtol=1e-5)


def test_favor_rejects_bad_shapes() -> None:
    q, k, v = _qkv((1, 2, 5, 4), seed=0)
    w = gaussian_projection(8, 4, generator=_generator(0))
    with pytest.raises(ValueError):
        favor_attention(q[0], k[0], v[0], w)  # not 4D
    with pytest.raises(ValueError):
        favor_attention(q, k, v, w[:, :3])  # projection width != head width
    with pytest.raises(ValueError):
        favor_attention(q, k, v, w, key_mask=torch.ones(1, 4, dtype=torch.bool))  # mask length


# ---------------------------------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------------------------------


def _gradcheck_inputs(seed: int) -> tuple[torch.Tensor, ...]:
    q, k, v = _qkv((2, 5, 3), seed=seed, dtype=torch.float64)
    return q.requires_grad_(), k.requires_grad_(), v.requires_grad_()


_GRADCHECK_MASK = torch.tensor([[True, True, False, True, True], [True, True, True, False, False]])


def test_gradcheck_bidirectional() -> None:
    w = gaussian_projection(4, 3, generator=_generator(0), dtype=torch.float64)
    inputs = _gradcheck_inputs(10)
    assert torch.autograd.gradcheck(lambda q, k, v: _BidirectionalFavor.apply(q, k, v, w, 0.3, None), inputs)
    assert torch.autograd.gradcheck(
        lambda q, k, v: _BidirectionalFavor.apply(q, k, v, w, 0.3, _GRADCHECK_MASK), inputs
    )


def test_gradcheck_causal_several_chunks() -> None:
    w = gaussian_projection(4, 3, generator=_generator(1), dtype=torch.float64)
    inputs = _gradcheck_inputs(11)
    for chunk in (2, 3):  # 3 and 2 chunks of a length-5 sequence, the last one partial
        assert torch.autograd.gradcheck(
            lambda q, k, v, c=chunk: _CausalFavor.apply(q, k, v, w, 0.3, _GRADCHECK_MASK, c), inputs
        )


@pytest.mark.parametrize("causal", [False, True])
def test_gradients_match_autograd_through_the_definition(causal: bool) -> None:
    d = 4
    q, k, v = _qkv((2, 2, 6, d), seed=12)
    w = gaussian_projection(8, d, generator=_generator(2))
    mask = _lengths_mask([6, 4], 6)
    weight = torch.randn(2, 2, 6, d, generator=_generator(13))

    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = favor_attention(*leaves, w, key_mask=mask, causal=causal, chunk_size=4)
    grads = torch.autograd.grad((out * weight).sum(), leaves)

    leaves64 = [t.double().requires_grad_() for t in (q, k, v)]
    expected = _reference(*leaves64, w.double(), key_mask=mask, causal=causal)
    expected_grads = torch.autograd.grad((expected * weight.double()).sum(), leaves64)

    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-4)
    assert (grads[1][1, :, 4:] == 0).all() and (grads[2][1, :, 4:] == 0).all()  # padded keys


@pytest.mark.parametrize("causal", [False, True])
def test_chunking_does_not_change_results(causal: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    q, k, v = _qkv((1, 2, 9, 4), seed=14)
    w = gaussian_projection(8, 4, generator=_generator(3))
    mask = _lengths_mask([7], 9)
    weight = torch.randn(1, 2, 9, 4, generator=_generator(15))

    def run(chunk_size: int) -> list[torch.Tensor]:
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        out = favor_attention(*leaves, w, key_mask=mask, causal=causal, chunk_size=chunk_size)
        return [out.detach(), *torch.autograd.grad((out * weight).sum(), leaves)]

    whole = run(128)
    # The bidirectional pass sizes its chunks from _CHUNK_ELEMENTS: 2 rows of 8 features per (b, h).
    monkeypatch.setattr(favor, "_CHUNK_ELEMENTS", 2 * 2 * 8)
    for got, want in zip(run(2), whole, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------
# Padding and causality
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
def test_padded_batch_equals_each_sequence_alone(causal: bool) -> None:
    lengths, length = [7, 4, 1], 7
    q, k, v = _qkv((3, 2, length, 4), seed=20)
    w = gaussian_projection(16, 4, generator=_generator(4))
    batched = favor_attention(
        q, k, v, w, key_mask=_lengths_mask(lengths, length), causal=causal, chunk_size=3
    )
    for b, n in enumerate(lengths):
        alone = favor_attention(
            q[b : b + 1, :, :n], k[b : b + 1, :, :n], v[b : b + 1, :, :n], w, causal=causal
        )
        torch.testing.assert_close(batched[b : b + 1, :, :n], alone, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_padded_positions_do_not_leak(causal: bool) -> None:
    lengths, length = [6, 3], 6
    mask = _lengths_mask(lengths, length)
    q, k, v = _qkv((2, 2, length, 4), seed=21)
    w = gaussian_projection(16, 4, generator=_generator(5))
    real_queries = mask[:, None, :, None].float()
    weight = torch.randn(2, 2, length, 4, generator=_generator(22)) * real_queries

    def run(q, k, v):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        out = favor_attention(*leaves, w, key_mask=mask, causal=causal, chunk_size=2)
        return [out.detach(), *torch.autograd.grad((out * weight).sum(), leaves)]

    clean = run(q, k, v)
    garbage = torch.randn(3, 2, 2, length, 4, generator=_generator(23)) * 1e4
    pad = ~mask[:, None, :, None]
    dirty = run(*(torch.where(pad, g, x) for g, x in zip(garbage, (q, k, v), strict=True)))
    for got, want in zip(dirty, clean, strict=True):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got * real_queries, want * real_queries, atol=1e-6, rtol=1e-5)


def test_causal_output_ignores_the_future() -> None:
    length = 10
    q, k, v = _qkv((2, 2, length, 4), seed=30)
    w = gaussian_projection(16, 4, generator=_generator(6))
    base = favor_attention(q, k, v, w, causal=True, chunk_size=3)
    noise = torch.randn(2, 2, 2, length, 4, generator=_generator(31)) * 5
    for i in (0, 2, 3, 7):
        future = (torch.arange(length) > i)[None, None, :, None]
        k2, v2 = k + noise[0] * future, v + noise[1] * future
        out = favor_attention(q, k2, v2, w, causal=True, chunk_size=3)
        torch.testing.assert_close(out[:, :, : i + 1], base[:, :, : i + 1], atol=1e-6, rtol=1e-6)
        assert not torch.allclose(out[:, :, i + 1 :], base[:, :, i + 1 :], atol=1e-3)


# ---------------------------------------------------------------------------------------------------
# Numerical stability
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm", [30.0, 100.0])
@pytest.mark.parametrize("causal", [False, True])
def test_large_norms_give_finite_outputs_and_gradients(causal: bool, norm: float) -> None:
    q, k, v = _qkv((2, 2, 12, 8), seed=40)
    q, k = _at_norm(q, norm), _at_norm(k, norm)
    w = gaussian_projection(32, 8, generator=_generator(7))
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = favor_attention(*leaves, w, key_mask=_lengths_mask([12, 9], 12), causal=causal, chunk_size=4)
    grads = torch.autograd.grad(out.pow(2).sum(), leaves)
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(g).all() for g in grads)
    assert out.abs().max() <= v.abs().max() + 1e-5  # outputs are weighted averages of values


@pytest.mark.parametrize("causal", [False, True])
def test_large_norms_match_the_log_space_estimator(causal: bool) -> None:
    # Norm 30 (|√s·x| ≈ 18): the unstabilised features under/overflow, the stabilised ones must not.
    q, k, v = _qkv((1, 2, 12, 8), seed=41, dtype=torch.float64)
    q, k = _at_norm(q, 30.0), _at_norm(k, 30.0)
    w = gaussian_projection(32, 8, generator=_generator(8), dtype=torch.float64)
    weight = torch.randn(1, 2, 12, 8, generator=_generator(42), dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = favor_attention(*(t.float() for t in leaves), w.float(), causal=causal, chunk_size=4).double()
    grads = torch.autograd.grad((out * weight).sum(), leaves)
    ref_leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    expected = _logspace_reference(*ref_leaves, w, causal=causal)
    expected_grads = torch.autograd.grad((expected * weight).sum(), ref_leaves)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-3 * want.abs().max().item(), rtol=1e-3)


def test_causal_gradients_when_a_later_chunk_raises_the_key_stabiliser() -> None:
    # The first chunk holds two copies of a large-norm key, whose feature exponents lie ~80 below those
    # of the later keys: the running key stabiliser rises by that much at the second chunk. Query 0
    # sees only key 0, so out[0] = v[0] exactly and d Σ out[0] / d v[0] = 1 whatever the stabilisers do.
    q, k, v = _qkv((1, 1, 4, 4), seed=43)
    k[..., 0, :] = _at_norm(k[..., 0, :], 20.0)
    k[..., 1, :] = k[..., 0, :]
    w = gaussian_projection(16, 4, generator=_generator(9))
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = favor_attention(*leaves, w, causal=True, chunk_size=2)
    torch.testing.assert_close(out[..., 0, :], v[..., 0, :])  # the forward pass is right
    torch.testing.assert_close(out[..., 1, :], v[..., :2, :].mean(-2))
    grad_v = torch.autograd.grad(out[..., 0, :].sum(), leaves[2])[0]
    torch.testing.assert_close(grad_v[..., 0, :], torch.ones(1, 1, 4))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("norm", [1.0, 25.0])
def test_identical_keys_give_the_mean_of_the_values(causal: bool, norm: float) -> None:
    # Whatever the projection, equal keys get equal weights: the output is the mean of the visible
    # values. Queries opposite to the keys make the stabilised normaliser tiny (≈ e^-84 at norm 25
    # after √s scaling, a raw norm of 42), which must not turn into a shrunken output.
    d = 8
    direction = _at_norm(torch.randn(d, generator=_generator(44)), norm * d**0.25)  # |√s·x| = norm
    q = direction.expand(1, 1, 3, d).clone()
    k = (-direction).expand(1, 1, 3, d).clone()
    v = torch.randn(1, 1, 3, d, generator=_generator(45))
    w = gaussian_projection(16, d, generator=_generator(10))
    out = favor_attention(q, k, v, w, causal=causal)
    counts = torch.arange(1, 4, dtype=torch.float32)[:, None]
    expected = v.cumsum(2) / counts if causal else v.mean(2, keepdim=True).expand_as(v)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------------
# Scaling, grouped heads, reduced precision
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [False, True])
def test_scaling_is_honoured(causal: bool) -> None:
    d = 8
    q, k, v = _qkv((1, 2, 7, d), seed=50)
    w = gaussian_projection(32, d, generator=_generator(11))
    default = favor_attention(q, k, v, w, causal=causal)
    # The default 1/√d is applied as d^(-1/4) on both q and k.
    quarter = d**-0.25
    torch.testing.assert_close(
        favor_attention(q * quarter, k * quarter, v, w, causal=causal, scaling=1.0),
        default,
        atol=1e-6,
        rtol=1e-5,
    )
    custom = favor_attention(q, k, v, w, causal=causal, scaling=0.3)
    root = math.sqrt(0.3)
    torch.testing.assert_close(
        favor_attention(q * root, k * root, v, w, causal=causal, scaling=1.0), custom, atol=1e-6, rtol=1e-5
    )
    assert not torch.allclose(custom, default, atol=1e-3)  # the argument is not ignored


def test_query_prescaled_like_esm_approximates_the_same_softmax() -> None:
    # ESM multiplies q by d^(-1/2) and asks for scaling=1: a different (still unbiased) estimator of the
    # same softmax, so the two agree only as m grows.
    d = 8
    q, k, v = _qkv((1, 2, 12, d), seed=51, scale=0.5)
    exact = softmax_attention(q * d**-0.25, k * d**-0.25, v)
    w = gaussian_projection(2048, d, generator=_generator(12))
    esm_style = favor_attention(q * d**-0.5, k, v, w, scaling=1.0)
    assert (esm_style - exact).pow(2).mean() < 5e-3
    assert (favor_attention(q, k, v, w) - exact).pow(2).mean() < 5e-3


@pytest.mark.parametrize("kv_heads", [1, 2])
@pytest.mark.parametrize("causal", [False, True])
def test_grouped_key_value_heads(kv_heads: int, causal: bool) -> None:
    g = _generator(52)
    q = torch.randn(2, 4, 6, 4, generator=g)
    k, v = torch.randn(2, kv_heads, 6, 4, generator=g), torch.randn(2, kv_heads, 6, 4, generator=g)
    w = gaussian_projection(16, 4, generator=_generator(13))
    mask = _lengths_mask([6, 5], 6)
    groups = 4 // kv_heads
    expected = favor_attention(
        q, k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1), w, key_mask=mask, causal=causal
    )
    torch.testing.assert_close(favor_attention(q, k, v, w, key_mask=mask, causal=causal), expected)


@pytest.mark.parametrize("causal", [False, True])
def test_bfloat16_in_bfloat16_out(causal: bool) -> None:
    q, k, v = _qkv((1, 2, 9, 8), seed=53, dtype=torch.bfloat16)
    w = gaussian_projection(32, 8, generator=_generator(14))
    out = favor_attention(q, k, v, w, causal=causal)
    assert out.dtype == torch.bfloat16
    full = favor_attention(q.float(), k.float(), v.float(), w, causal=causal)
    torch.testing.assert_close(out.float(), full, atol=2e-2, rtol=2e-2)
