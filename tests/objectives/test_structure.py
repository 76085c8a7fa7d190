from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seqstruct.objectives.structure import (
    StructureObjective,
    graph_info_nce_loss,
    margin_contrastive_in_batch_loss,
    margin_contrastive_loss,
    multi_similarity_loss,
)


def test_margin_loss_zero_when_positives_coincide_and_negatives_are_far() -> None:
    anchor = torch.zeros(2, 3)
    negatives = torch.full((2, 4, 3), 2.0)  # distance 2√3 > margin 1
    assert margin_contrastive_loss(anchor, anchor.clone(), negatives, margin=1.0).item() == 0.0


def test_margin_loss_matches_formula() -> None:
    anchor = torch.tensor([[0.0, 0.0]])
    positive = torch.tensor([[3.0, 4.0]])  # squared distance 25
    negatives = torch.tensor([[[0.3, 0.4], [6.0, 8.0]]])  # distances 0.5 and 10
    expected = 25.0 + ((2.0 - 0.5) ** 2 + 0.0) / 2
    loss = margin_contrastive_loss(anchor, positive, negatives, margin=2.0)
    assert loss.item() == pytest.approx(expected)


def test_in_batch_margin_loss_matches_formula() -> None:
    # rows: 0 anchor, 1 its positive (linked), 2 linked to 0 too, 3 unlinked
    embeddings = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.1, 0.0], [0.6, 0.8]])
    linked = torch.zeros(4, 4, dtype=torch.bool)
    for a, b in ((0, 1), (0, 2)):
        linked[a, b] = linked[b, a] = True
    loss = margin_contrastive_in_batch_loss(
        embeddings, torch.tensor([0]), torch.tensor([1]), linked, margin=2.0
    )
    # pull 1.0; the one negative of row 0 is row 3 at distance 1: (2 - 1)^2; row 2 is linked, no push
    assert loss.item() == pytest.approx(1.0 + 1.0)
    far = margin_contrastive_in_batch_loss(
        embeddings, torch.tensor([0]), torch.tensor([1]), linked, margin=0.5
    )
    assert far.item() == pytest.approx(1.0)  # every negative already beyond the margin


def test_objective_combines_and_picks_in_batch_negatives_when_none_sampled() -> None:
    embeddings = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    linked = torch.tensor([[False, True, False], [True, False, False], [False, False, False]])
    rows = {
        "anchor": torch.tensor([0]),
        "positive": torch.tensor([1]),
        "negative": torch.zeros(1, 0, dtype=torch.long),
        "adjacency": linked,
    }
    objective = StructureObjective("margin", weight=0.25, margin=2.0)
    structure = objective.structure_loss(embeddings, rows)
    assert structure.item() == pytest.approx(1.0 + 1.0)
    sampled = rows | {"negative": torch.tensor([[2]])}
    assert objective.structure_loss(embeddings, sampled).item() == pytest.approx(2.0)
    total = objective.combine(torch.tensor(4.0), structure)
    assert total.item() == pytest.approx(0.75 * 4.0 + 0.25 * 2.0)
    assert (
        StructureObjective("margin", weight=0.0).combine(torch.tensor(3.0), torch.tensor(100.0)).item() == 3.0
    )
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        StructureObjective("margin", weight=-0.1)


def test_info_nce_matches_manual_and_skips_anchors_without_positives() -> None:
    torch.manual_seed(0)
    e = torch.randn(4, 5)
    positives = torch.zeros(4, 4, dtype=torch.bool)
    positives[0, 1] = positives[1, 0] = positives[0, 2] = positives[2, 0] = True  # node 3 has none
    tau = 0.1
    z = F.normalize(e, dim=-1)
    s = z @ z.T / tau
    manual = []
    for i, pos in [(0, [1, 2]), (1, [0]), (2, [0])]:
        others = [j for j in range(4) if j != i]
        denom = torch.logsumexp(s[i, others], 0)
        manual.append(-sum((s[i, p] - denom).item() for p in pos) / len(pos))
    loss = graph_info_nce_loss(e, positives, temperature=tau)
    assert loss.item() == pytest.approx(sum(manual) / 3, rel=1e-5)


def test_losses_fall_when_neighbours_move_together() -> None:
    positives = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=torch.bool)
    apart = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])  # neighbours orthogonal
    together = torch.tensor([[1.0, 0.0], [1.0, 0.1], [-1.0, 0.0], [-1.0, -0.1]])
    for loss in (graph_info_nce_loss, multi_similarity_loss):
        assert loss(together, positives) < loss(apart, positives), loss.__name__


def test_multi_similarity_formula_without_mining_pressure() -> None:
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [math.sqrt(0.5), math.sqrt(0.5)]])
    positives = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    # anchor 0: positive 1 (S=0), negative 2 (S=0.707 > 0 - 0.1: kept); positive kept (0 - 0.1 < 0.707)
    s_pos, s_neg = 0.0, math.sqrt(0.5)
    term = math.log1p(math.exp(-2 * (s_pos - 0.5))) / 2 + math.log1p(math.exp(50 * (s_neg - 0.5))) / 50
    loss = multi_similarity_loss(e, positives)
    assert loss.item() == pytest.approx(term, rel=1e-5)  # anchors 0 and 1 are symmetric, 2 has no positive


@pytest.mark.parametrize("loss", [graph_info_nce_loss, multi_similarity_loss])
def test_batch_without_edges_gives_zero_with_gradient_graph(loss) -> None:
    e = torch.randn(3, 4, requires_grad=True)
    value = loss(e, torch.zeros(3, 3, dtype=torch.bool))
    assert value.item() == 0.0
    value.backward()
    assert torch.equal(e.grad, torch.zeros_like(e))


def test_positive_mask_shape_checked() -> None:
    with pytest.raises(ValueError, match=r"\[B, B\]"):
        graph_info_nce_loss(torch.randn(3, 4), torch.zeros(2, 2, dtype=torch.bool))
