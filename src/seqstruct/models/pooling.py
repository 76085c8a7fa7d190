"""Pooling: one vector per sequence from per-token hidden states.

`mean` averages residue tokens only (the <cls>/<eos> markers are not part of the protein, as in ESM's
mean embeddings); `cls` takes the first token's state.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def mean_pool(hidden: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """hidden: (B, L, D); token_mask: (B, L), 1 on tokens to average. Returns (B, D)."""
    weights = token_mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
    counts = weights.sum(dim=1).clamp(min=1.0)  # (B, 1); an empty row pools to zeros, not NaN
    return (hidden * weights).sum(dim=1) / counts


def cls_pool(hidden: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """hidden: (B, L, D). Returns the first token's state (B, D); `token_mask` is unused."""
    return hidden[:, 0]


POOLINGS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mean": mean_pool,
    "cls": cls_pool,
}


def get_pooling(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name not in POOLINGS:
        raise ValueError(f"unknown pooling {name!r}; expected one of {sorted(POOLINGS)}")
    return POOLINGS[name]
