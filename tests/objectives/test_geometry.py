"""Alignment and uniformity (Wang & Isola 2020) against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from seqstruct.objectives.geometry import alignment, geometry, uniformity

# Three unit vectors: e1, e2, -e1. Squared distances: (e1, e2) 2, (e1, -e1) 4, (e2, -e1) 2.
POINTS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])


def test_alignment_by_hand() -> None:
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # pair 0 identical, pair 1 at squared distance 2
    assert alignment(x, y).item() == pytest.approx(1.0)  # (0 + 2) / 2
    assert alignment(x, y, alpha=1.0).item() == pytest.approx(math.sqrt(2) / 2)  # (0 + sqrt 2) / 2
    # The embeddings are normalised first: lengths do not count, directions do.
    assert alignment(3 * x, 0.5 * y).item() == pytest.approx(1.0)


def test_uniformity_by_hand() -> None:
    expected = math.log((2 * math.exp(-4) + math.exp(-8)) / 3)  # exp(-2 d^2) over the three pairs
    assert uniformity(POINTS).item() == pytest.approx(expected)
    assert uniformity(5 * POINTS).item() == pytest.approx(expected)
    assert uniformity(POINTS, t=1.0).item() == pytest.approx(math.log((2 * math.exp(-2) + math.exp(-4)) / 3))
    assert uniformity(torch.ones(4, 3)).item() == pytest.approx(0.0, abs=1e-6)  # one point: the maximum


def test_uniformity_does_not_underflow() -> None:
    # Two orthogonal vectors at t = 1000: exp(-2000) is 0 in float64, its log is still -2000.
    pair = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert uniformity(pair, t=1000.0).item() == pytest.approx(-2000.0)


def test_geometry_reads_the_sample_it_is_given() -> None:
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    found = geometry(anchors, positives)
    assert found["alignment"] == pytest.approx(1.0)
    # Default sample: the four rows e1, e2, e1, -e1 (e1 twice: one pair at distance 0). Squared
    # distances of the pairs i < j: (0,1) 2, (0,2) 0, (0,3) 4, (1,2) 2, (1,3) 2, (2,3) 4.
    squared = [2, 0, 4, 2, 2, 4]
    assert found["uniformity"] == pytest.approx(math.log(sum(math.exp(-2 * d) for d in squared) / 6))
    # The distinct points instead: the repeated e1 no longer counts as a pair at distance 0.
    assert geometry(anchors, positives, points=POINTS)["uniformity"] == pytest.approx(
        uniformity(POINTS).item()
    )
    assert isinstance(found["alignment"], float) and isinstance(found["uniformity"], float)


def test_refusals() -> None:
    with pytest.raises(ValueError, match="one shape"):
        alignment(torch.ones(2, 3), torch.ones(3, 3))
    with pytest.raises(ValueError, match="N >= 2"):
        uniformity(torch.ones(1, 3))
