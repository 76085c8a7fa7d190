"""The paper's definitions, unstabilised: random-feature maps, kernel attention and exact softmax
attention (Choromanski et al. 2021, eqs. 2-5). The reference the fast path (seqstruct.attention.favor) is
tested against and the FAVOR+ error study measures; never used for training, and the exact attention
builds the L×L matrix.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

FeatureKind = Literal["positive", "trigonometric"]


def positive_features(x: Tensor, projection: Tensor) -> Tensor:
    """φ⁺(x) = exp(W x − |x|²/2)/√m: positive, unbiased for exp(x·y). x [..., d] -> [..., m]."""
    m = projection.shape[0]
    exponent = x @ projection.T - 0.5 * x.pow(2).sum(-1, keepdim=True)
    return torch.exp(exponent) / math.sqrt(m)


def trigonometric_features(x: Tensor, projection: Tensor) -> Tensor:
    """φ^trig(x) = exp(|x|²/2)/√(m/2) [sin(W' x), cos(W' x)], W' the first m/2 rows: also unbiased for
    exp(x·y), but with signed features whose estimates can make the normaliser negative (the paper's
    reason for FAVOR+). Uses m/2 frequencies so it has the same m features as `positive_features`.
    x [..., d] -> [..., m]."""
    half = projection.shape[0] // 2
    if half < 1:
        raise ValueError("trigonometric features need at least 2 features")
    u = x @ projection[:half].T  # [..., m/2]
    scale = torch.exp(0.5 * x.pow(2).sum(-1, keepdim=True)) / math.sqrt(half)
    return torch.cat([torch.sin(u), torch.cos(u)], dim=-1) * scale


def kernel_attention(
    q: Tensor, k: Tensor, v: Tensor, projection: Tensor, *, kind: FeatureKind = "positive"
) -> Tensor:
    """Bidirectional random-feature attention with the unstabilised features, for approximation
    studies: D⁻¹ φ(q) (φ(k)ᵀ v), q/k already scaled so that softmax(q kᵀ) is the target.
    q, k [..., L, d], v [..., L, dv] -> [..., L, dv]."""
    feature_map = positive_features if kind == "positive" else trigonometric_features
    qf, kf = feature_map(q, projection), feature_map(k, projection)  # [..., L, m]
    kv = kf.transpose(-2, -1) @ v  # [..., m, dv]
    normaliser = qf @ kf.sum(-2).unsqueeze(-1)  # [..., L, 1]
    return (qf @ kv) / normaliser


def softmax_attention(q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False) -> Tensor:
    """Exact softmax(q kᵀ) v for reference (no extra scaling: q and k come scaled). Builds the L×L
    matrix; only for tests and error studies. q, k [..., L, d], v [..., L, dv] -> [..., L, dv]."""
    scores = q @ k.transpose(-2, -1)  # [..., L, L]
    if causal:
        length = q.shape[-2]
        future = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v
