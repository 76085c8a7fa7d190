"""The Triton FAVOR+ kernels against the reference functions, forward and backward.

On a machine without a GPU (CI) the kernels run under Triton's interpreter on the CPU, which is set up
here before anything imports triton; SEQSTRUCT_TEST_DEVICE=cuda (scripts/gpu/bench-attention.sh) runs
the same tests compiled on the GPU. Sizes are small (the interpreter runs a program at a time) but
cover what the kernels treat apart: lengths that are not a multiple of the 64-token chunk, a feature
count that is not a multiple of the 64-feature block, head sizes under 16, padded keys, packed
sequences (an empty one and tokens after the last), grouped keys, bf16.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

from seqstruct.attention import reference
from seqstruct.attention.favor import favor_attention, gaussian_projection
from seqstruct.attention.kernels import choose_kernel
from seqstruct.attention.kernels.favor import BLOCK_L, INTERPRET, favor_triton

# tests/conftest.py sets TRITON_INTERPRET=1 for this unless SEQSTRUCT_TEST_DEVICE=cuda.
DEVICE = os.environ.get("SEQSTRUCT_TEST_DEVICE", "cpu")
assert (DEVICE == "cpu") == INTERPRET, "TRITON_INTERPRET must be set before triton is first imported"

MODES = [pytest.param(False, id="bidirectional"), pytest.param(True, id="causal")]


def _inputs(batch, heads, length, dim, *, seed=0, dtype=torch.float32, std=1.0):
    generator = torch.Generator().manual_seed(seed)
    q, k, v, grad = (std * torch.randn(batch, heads, length, dim, generator=generator) for _ in range(4))
    return [x.to(DEVICE, dtype) for x in (q, k, v)], grad.to(DEVICE, dtype)


def _projection(num_features, dim, seed=1):
    return gaussian_projection(num_features, dim, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


def _reference(q, k, v, projection, causal, scaling=None, key_mask=None):
    """The paper's unstabilised estimator in float64 (reference.positive_features), with the causal
    and key-mask restrictions written out as an explicit [L, L] weight matrix."""
    q, k, v, projection = (x.double() for x in (q, k, v, projection))
    root = math.sqrt(q.shape[-1] ** -0.5 if scaling is None else scaling)
    qf = reference.positive_features(q * root, projection)  # [B, H, L, m]
    kf = reference.positive_features(k * root, projection)
    weights = qf @ kf.transpose(-1, -2)  # [B, H, Lq, Lk]
    if causal:
        weights = weights.tril()
    if key_mask is not None:
        weights = weights * key_mask[:, None, None, :].to(weights.dtype)
    return (weights @ v) / weights.sum(-1, keepdim=True)


def _run(fn, inputs, grad):
    """fn's output and the gradients of <output, grad> w.r.t. the inputs (fresh leaves)."""
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves, grad.to(out.dtype))
    return out.detach(), grads


def _assert_close(actual, expected, rtol, what):
    """Max error relative to the largest entry (entries near 0 get the tensor's scale)."""
    error = (actual.double() - expected.double()).abs().max().item()
    scale = expected.double().abs().max().item()
    assert error <= rtol * scale, f"{what}: max error {error:.3g} > {rtol} x {scale:.3g}"


@pytest.mark.parametrize("causal", MODES)
def test_fp32_matches_the_reference_forward_and_backward(causal):
    # L = 100: a full chunk and a partial one; m = 80: a full feature block and a partial one; d = 12 < 16.
    inputs, grad = _inputs(2, 2, 100, 12, seed=0)
    projection = _projection(80, 12)
    out, grads = _run(lambda q, k, v: favor_triton(q, k, v, projection, causal=causal), inputs, grad)
    expected, expected_grads = _run(
        lambda q, k, v: _reference(q, k, v, projection, causal), [x.double() for x in inputs], grad.double()
    )
    assert out.dtype == torch.float32 and out.shape == (2, 2, 100, 12)
    _assert_close(out, expected, 1e-5, "out")
    for name, actual, wanted in zip("qkv", grads, expected_grads, strict=True):
        _assert_close(actual, wanted, 1e-4, f"d{name}")


@pytest.mark.parametrize("causal", MODES)
def test_bf16_matches_the_reference_within_bf16_rounding(causal):
    inputs, grad = _inputs(1, 2, 80, 32, seed=2, dtype=torch.bfloat16)
    projection = _projection(64, 32)
    out, grads = _run(lambda q, k, v: favor_triton(q, k, v, projection, causal=causal), inputs, grad)
    # The reference sees the same bf16-rounded inputs, in float64.
    expected, expected_grads = _run(
        lambda q, k, v: _reference(q, k, v, projection, causal), [x.double() for x in inputs], grad.double()
    )
    assert out.dtype == torch.bfloat16 and all(g.dtype == torch.bfloat16 for g in grads)
    _assert_close(out, expected, 2e-2, "out")
    for name, actual, wanted in zip("qkv", grads, expected_grads, strict=True):
        _assert_close(actual, wanted, 4e-2, f"d{name}")
    # The fp32 kernels land an order of magnitude closer: the tolerance is bf16's, not slack.
    out32 = favor_triton(*(x.float() for x in inputs), projection, causal=causal)
    _assert_close(out32, expected, 1e-4, "fp32 out")


@pytest.mark.parametrize("causal", MODES)
def test_padded_keys_leave_the_output_and_get_no_gradient(causal):
    inputs, grad = _inputs(2, 2, 70, 16, seed=3)
    projection = _projection(32, 16)
    key_mask = torch.ones(2, 70, dtype=torch.bool, device=DEVICE)
    key_mask[0, 50:] = False  # right padding
    key_mask[1, 10:20] = False  # a hole, to be sure nothing assumes padding at the end
    out, grads = _run(
        lambda q, k, v: favor_triton(q, k, v, projection, causal=causal, key_mask=key_mask), inputs, grad
    )
    expected, expected_grads = _run(
        lambda q, k, v: _reference(q, k, v, projection, causal, key_mask=key_mask),
        [x.double() for x in inputs],
        grad.double(),
    )
    _assert_close(out, expected, 1e-5, "out")
    for name, actual, wanted in zip("qkv", grads, expected_grads, strict=True):
        _assert_close(actual, wanted, 1e-4, f"d{name}")
    padded = ~key_mask
    assert grads[1][0, :, padded[0]].abs().max() == 0 and grads[2][1, :, padded[1]].abs().max() == 0


@pytest.mark.parametrize("causal", MODES)
def test_packed_sequences_attend_only_within_themselves(causal):
    # Sequences of 37, 0 (empty), 93 and 20 tokens, then 10 tokens that belong to none.
    cu_seqlens = torch.tensor([0, 37, 37, 130, 150], dtype=torch.int32, device=DEVICE)
    inputs, grad = _inputs(1, 2, 160, 16, seed=4)
    projection = _projection(32, 16)
    out, grads = _run(
        lambda q, k, v: favor_triton(q, k, v, projection, causal=causal, cu_seqlens=cu_seqlens), inputs, grad
    )
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds, bounds[1:], strict=False):
        if start == end:
            continue
        piece = [x[:, :, start:end].double() for x in inputs]
        expected, expected_grads = _run(
            lambda q, k, v: _reference(q, k, v, projection, causal), piece, grad[:, :, start:end].double()
        )
        _assert_close(out[:, :, start:end], expected, 1e-5, f"out[{start}:{end}]")
        for name, actual, wanted in zip("qkv", grads, expected_grads, strict=True):
            _assert_close(actual[:, :, start:end], wanted, 1e-4, f"d{name}[{start}:{end}]")
    assert out[:, :, 150:].abs().max() == 0
    assert all(g[:, :, 150:].abs().max() == 0 for g in grads)


@pytest.mark.slow
@pytest.mark.parametrize("causal", MODES)
def test_benchmark_sizes_match_the_reference(causal):
    # The benchmark's head size and feature count (d 64, m 256: eight full feature blocks), three chunks.
    inputs, grad = _inputs(1, 2, 3 * BLOCK_L - 5, 64, seed=7, dtype=torch.bfloat16)
    projection = _projection(256, 64)
    out, grads = _run(lambda q, k, v: favor_triton(q, k, v, projection, causal=causal), inputs, grad)
    expected, expected_grads = _run(
        lambda q, k, v: _reference(q, k, v, projection, causal), [x.double() for x in inputs], grad.double()
    )
    _assert_close(out, expected, 2e-2, "out")
    for name, actual, wanted in zip("qkv", grads, expected_grads, strict=True):
        _assert_close(actual, wanted, 4e-2, f"d{name}")


def test_grouped_keys_scaling_and_balance_match_the_pytorch_path():
    # 4 query heads sharing 2 key/value heads, ESM's scaling 1 with its balance d^(1/4), 2.5x larger
    # inputs (exponents up to ~30: the stabilisers at work) and a length of exactly two chunks.
    generator = torch.Generator().manual_seed(5)
    q = 2.5 * torch.randn(1, 4, 2 * BLOCK_L, 16, generator=generator) / 4  # ESM pre-scales q by 1/√d
    k, v = (2.5 * torch.randn(1, 2, 2 * BLOCK_L, 16, generator=generator) for _ in range(2))
    grad = torch.randn(1, 4, 2 * BLOCK_L, 16, generator=generator).to(DEVICE)
    inputs = [x.to(DEVICE) for x in (q, k, v)]
    projection = _projection(48, 16)
    options = {"causal": True, "scaling": 1.0, "balance": 16**0.25}
    out, grads = _run(lambda q, k, v: favor_triton(q, k, v, projection, **options), inputs, grad)
    expected, expected_grads = _run(
        lambda q, k, v: favor_attention(q, k, v, projection.double(), **options),
        [x.double() for x in inputs],
        grad.double(),
    )
    _assert_close(out, expected, 1e-4, "out")
    for name, actual, wanted in zip("qkv", grads, expected_grads, strict=True):
        _assert_close(actual, wanted, 1e-3, f"d{name}")


def test_favor_attention_hands_the_call_to_the_kernels():
    inputs, _ = _inputs(1, 2, 40, 16, seed=6)
    projection = _projection(32, 16)
    direct = favor_triton(*inputs, projection)
    through = favor_attention(*inputs, projection, kernel="triton")
    assert torch.equal(direct, through)
    _assert_close(favor_attention(*inputs, projection, kernel="torch"), direct, 1e-5, "torch path")


def test_kernel_choice(monkeypatch):
    q = torch.zeros(1, 1, 4, 16, device=DEVICE)
    assert choose_kernel("torch", q, q) == "torch"
    # auto is Triton on CUDA only, never the interpreter
    assert choose_kernel("auto", q, q) == ("triton" if DEVICE == "cuda" else "torch")
    assert choose_kernel("triton", q, q) == "triton"  # on the CPU: the interpreter set up in this module
    longer = torch.zeros(1, 1, 5, 16, device=DEVICE)
    assert choose_kernel("auto", q, longer) == "torch"  # cross-attention lengths: the PyTorch path
    with pytest.raises(ValueError, match="as many queries as keys"):
        choose_kernel("triton", q, longer)
    assert choose_kernel("auto", q.half(), q.half()) == "torch"
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        choose_kernel("triton", q.half(), q.half())
    with pytest.raises(ValueError, match="kernel must be one of"):
        choose_kernel("cuda", q, q)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="run on CUDA"):
        choose_kernel("triton", q.cpu(), q.cpu())


def test_bad_packed_inputs_are_refused_by_name():
    inputs, _ = _inputs(2, 1, 8, 16)
    projection = _projection(16, 16)
    with pytest.raises(ValueError, match="batch of 2"):
        favor_triton(*inputs, projection, cu_seqlens=torch.tensor([0, 8]))
    single = [x[:1] for x in inputs]
    with pytest.raises(ValueError, match="rise from 0"):
        favor_triton(*single, projection, cu_seqlens=torch.tensor([0, 6, 4]))
    with pytest.raises(ValueError, match="not both"):
        favor_triton(*single, projection, cu_seqlens=torch.tensor([0, 8]), key_mask=torch.ones(1, 8).bool())
    with pytest.raises(ValueError, match="need the Triton kernels"):
        favor_attention(*single, projection, cu_seqlens=torch.tensor([0, 8]))


def test_a_transformers_model_gets_the_kernels_through_its_favor_settings():
    """An ESM encoder (rotary, pre-scaled queries: the balance path) with favor.kernel = "triton" gives
    the outputs and gradients of the same model on the PyTorch path, padding included."""
    import dataclasses

    from transformers import EsmConfig, EsmModel

    from seqstruct.attention.interface import performerize
    from seqstruct.config import FavorConfig

    config = EsmConfig(
        vocab_size=33, pad_token_id=1, mask_token_id=32, position_embedding_type="rotary", token_dropout=False,
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = performerize(EsmModel(config), settings=FavorConfig(num_features=32)).to(DEVICE)
    ids = torch.randint(4, 30, (2, 70), device=DEVICE)
    mask = torch.ones_like(ids)
    mask[1, 45:] = 0
    weights = torch.randn(2, 70, 32, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    outputs = {}
    for kernel in ("torch", "triton"):
        model.config.favor = dataclasses.asdict(FavorConfig(num_features=32, kernel=kernel))
        model.zero_grad()
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        (hidden * weights)[mask.bool()].sum().backward()  # not Σ hidden²: the final layer norm fixes it
        grad = model.encoder.layer[0].attention.self.query.weight.grad.clone()
        outputs[kernel] = (hidden.detach(), grad)
    real = mask.bool()
    assert not torch.equal(outputs["triton"][0], outputs["torch"][0])  # two implementations did run
    _assert_close(outputs["triton"][0][real], outputs["torch"][0][real], 1e-4, "hidden states")
    _assert_close(outputs["triton"][1], outputs["torch"][1], 1e-3, "query weight gradient")
