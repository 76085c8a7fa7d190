"""Alignment and uniformity of an embedding space (Wang & Isola, "Understanding Contrastive
Representation Learning through Alignment and Uniformity on the Hypersphere", ICML 2020).

On L2-normalised embeddings f:
- alignment  = E_{(x, y) positive} ||f(x) - f(y)||^alpha        (alpha = 2; lower: positives closer)
- uniformity = log E_{x, y distinct} exp(-t ||f(x) - f(y)||^2)  (t = 2; lower: spread more evenly)

Both are the paper's losses, so they are tensors with gradients; `geometry` gives the two as floats for
a metrics file. The paper reads contrastive training as lowering both; SimCSE reads its gains that way.
Alignment (alpha = 2) lies in [0, 4]: 0 when every positive pair is one point. Uniformity (t = 2) lies in
[-8, 0]: 0 when every vector is one point, about -4 for vectors spread uniformly over a high-dimensional
sphere (squared distances near 2).

Here (floor 3, with the losses) rather than in evaluation/, because contrastive training reports them
before and after it trains, and training sits below evaluation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def alignment(x: Tensor, y: Tensor, alpha: float = 2.0) -> Tensor:
    """x, y: (N, D), row i of each a positive pair; normalised here. Mean ||x_i - y_i||^alpha: ()."""
    if x.shape != y.shape or x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"alignment needs two (N, D) batches of one shape, N >= 1; got {x.shape}, {y.shape}")
    x, y = torch.nn.functional.normalize(x, dim=-1), torch.nn.functional.normalize(y, dim=-1)
    return (x - y).norm(dim=-1).pow(alpha).mean()


def uniformity(x: Tensor, t: float = 2.0) -> Tensor:
    """x: (N, D), N >= 2; normalised here. log of the mean of exp(-t ||x_i - x_j||^2) over the N(N-1)/2
    pairs i < j: (). Through logsumexp, so that a spread-out space does not underflow to log 0."""
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"uniformity needs an (N, D) batch with N >= 2; got {tuple(x.shape)}")
    x = torch.nn.functional.normalize(x, dim=-1)
    squared = torch.pdist(x, p=2).pow(2)  # (N(N-1)/2,)
    return torch.logsumexp(-t * squared, dim=0) - math.log(squared.numel())


def geometry(anchors: Tensor, positives: Tensor, points: Tensor | None = None) -> dict[str, float]:
    """{"alignment", "uniformity"} as floats, in float64. anchors, positives: (N, D) positive pairs;
    points: (M, D) the sample uniformity reads (default: anchors and positives together). Pass the
    distinct texts' vectors there: a text repeated across pairs would count as a pair at distance 0."""
    anchors, positives = anchors.detach().double(), positives.detach().double()
    sample = torch.cat([anchors, positives]) if points is None else points.detach().double()
    return {"alignment": alignment(anchors, positives).item(), "uniformity": uniformity(sample).item()}
