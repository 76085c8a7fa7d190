from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seqstruct.evaluation.structure import link_retrieval
from seqstruct.objectives.structure import (
    StructureObjective,
    cosine_distance,
    graph_info_nce_loss,
    link_mrr,
    margin_euclidean_in_batch_loss,
    margin_euclidean_loss,
    margin_in_batch_loss,
    margin_loss,
    multi_similarity_loss,
)


def test_margin_euclidean_loss_zero_when_positives_coincide_and_negatives_are_far() -> None:
    anchor = torch.zeros(2, 3)
    negatives = torch.full((2, 4, 3), 2.0)  # distance 2√3 > margin 1
    assert margin_euclidean_loss(anchor, anchor.clone(), negatives, margin=1.0).item() == 0.0


def test_margin_euclidean_loss_matches_formula() -> None:
    anchor = torch.tensor([[0.0, 0.0]])
    positive = torch.tensor([[3.0, 4.0]])  # squared distance 25
    negatives = torch.tensor([[[0.3, 0.4], [6.0, 8.0]]])  # distances 0.5 and 10
    expected = 25.0 + ((2.0 - 0.5) ** 2 + 0.0) / 2
    loss = margin_euclidean_loss(anchor, positive, negatives, margin=2.0)
    assert loss.item() == pytest.approx(expected)


def test_in_batch_margin_euclidean_loss_matches_formula() -> None:
    # rows: 0 anchor, 1 its positive (linked), 2 linked to 0 too, 3 unlinked
    embeddings = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.1, 0.0], [0.6, 0.8]])
    linked = torch.zeros(4, 4, dtype=torch.bool)
    for a, b in ((0, 1), (0, 2)):
        linked[a, b] = linked[b, a] = True
    loss = margin_euclidean_in_batch_loss(
        embeddings, torch.tensor([0]), torch.tensor([1]), linked, margin=2.0
    )
    # pull 1.0; the one negative of row 0 is row 3 at distance 1: (2 - 1)^2; row 2 is linked, no push
    assert loss.item() == pytest.approx(1.0 + 1.0)
    far = margin_euclidean_in_batch_loss(embeddings, torch.tensor([0]), torch.tensor([1]), linked, margin=0.5)
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
    objective = StructureObjective("margin_euclidean", weight=0.25, margin=2.0)
    structure = objective.structure_loss(embeddings, rows)
    assert structure.item() == pytest.approx(1.0 + 1.0)
    sampled = rows | {"negative": torch.tensor([[2]])}
    assert objective.structure_loss(embeddings, sampled).item() == pytest.approx(2.0)
    total = objective.combine(torch.tensor(4.0), structure, step=0)
    assert total.item() == pytest.approx(0.75 * 4.0 + 0.25 * 2.0)
    assert (
        StructureObjective("margin_cosine", weight=0.0)
        .combine(torch.tensor(3.0), torch.tensor(100.0), 0)
        .item()
        == 3.0
    )
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        StructureObjective("margin_cosine", weight=-0.1)
    with pytest.raises(ValueError, match="was the paper's Euclidean margin loss"):
        StructureObjective("margin")  # renamed: an old config must not train another loss silently


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


# ---------------------------------------------------------------------------------------------------
# Cosine geometry, chance values, λ warm-up, link MRR (issue 21)
# ---------------------------------------------------------------------------------------------------


def test_cosine_margin_loss_matches_formula() -> None:
    anchor = torch.tensor([[1.0, 0.0]])
    positive = torch.tensor([[3.0, 3.0]])  # 45 degrees: d = 1 - 1/sqrt(2)
    negatives = torch.tensor([[[2.0, 0.1], [-5.0, 0.0]]])  # nearly parallel, and opposite (d = 2)
    margin = 0.5
    d_pos = 1 - 1 / math.sqrt(2)
    d_near = 1 - 2.0 / math.hypot(2.0, 0.1)
    expected = d_pos + (max(0.0, margin - d_near) + 0.0) / 2
    assert margin_loss(anchor, positive, negatives, margin).item() == pytest.approx(expected, rel=1e-5)
    assert cosine_distance(anchor, -anchor).item() == pytest.approx(2.0)


def test_in_batch_cosine_margin_loss_matches_formula() -> None:
    # rows: 0 anchor, 1 its positive, 2 linked to 0 too (no push), 3 unlinked and orthogonal, 4 opposite
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, -3.0], [-1.0, 0.0]])
    linked = torch.zeros(5, 5, dtype=torch.bool)
    for a, b in ((0, 1), (0, 2)):
        linked[a, b] = linked[b, a] = True
    loss = margin_in_batch_loss(embeddings, torch.tensor([0]), torch.tensor([1]), linked, margin=1.5)
    # pull d(0, 1) = 1; negatives 3 (d = 1: hinge 0.5) and 4 (d = 2: beyond the margin)
    assert loss.item() == pytest.approx(1.0 + (0.5 + 0.0) / 2, rel=1e-6)


def _layout(rows: int = 6, sampled: bool = False) -> dict[str, torch.Tensor]:
    """A batch layout: rows 0-2 anchors, 3-4 their positives (anchor 2 has none), row 5 a negative."""
    adjacency = torch.zeros(rows, rows, dtype=torch.bool)
    for a, b in ((0, 3), (1, 4), (0, 1)):
        adjacency[a, b] = adjacency[b, a] = True
    negative = torch.tensor([[5], [5]]) if sampled else torch.zeros(2, 0, dtype=torch.long)
    return {
        "anchor": torch.tensor([0, 1]),
        "positive": torch.tensor([3, 4]),
        "negative": negative,
        "adjacency": adjacency,
    }


LOSS_CASES = [
    ("info_nce", False),
    ("multi_similarity", False),
    ("margin_cosine", False),
    ("margin_cosine", True),
    ("margin_euclidean", False),
    ("margin_euclidean", True),
]


@pytest.mark.parametrize(("loss", "sampled"), LOSS_CASES)
def test_cosine_losses_ignore_the_scale_of_the_pooled_vectors(loss, sampled) -> None:
    """The pooled vectors of a fresh encoder have norms near 17: a loss read off their directions is the
    same at any norm; the paper's Euclidean margin loss is not, which is why it is no longer the default."""
    torch.manual_seed(0)
    e = torch.randn(6, 8)
    objective = StructureObjective(loss, margin=0.8)
    rows = _layout(sampled=sampled)
    small, large = objective.structure_loss(e, rows), objective.structure_loss(10 * e, rows)
    if loss == "margin_euclidean":
        assert large.item() > 10 * small.item()
    else:
        assert large.item() == pytest.approx(small.item(), rel=1e-5)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_cosine_losses_stay_within_their_bounds(scale) -> None:
    torch.manual_seed(1)
    rows = _layout()
    for _ in range(5):
        e = scale * torch.randn(6, 4)
        info_nce = StructureObjective("info_nce", temperature=0.1).structure_loss(e, rows).item()
        assert 0.0 <= info_nce <= math.log(5) + 2 / 0.1
        margin = StructureObjective("margin_cosine", margin=1.0).structure_loss(e, rows).item()
        assert 0.0 <= margin <= 2.0 + 1.0


@pytest.mark.parametrize(("loss", "sampled"), LOSS_CASES)
def test_chance_is_the_loss_of_an_embedding_that_ignores_the_graph(loss, sampled) -> None:
    """All rows alike (or, for the Euclidean margin, all at the one distance margin/2 apart) is an
    embedding that knows nothing of the graph; the chance value is what every loss scores there."""
    rows = _layout(sampled=sampled)
    objective = StructureObjective(loss, margin=0.8, temperature=0.07)
    identical = torch.ones(6, 5)
    chance = objective.chance(identical, rows).item()
    if loss == "info_nce":
        assert objective.structure_loss(identical, rows).item() == pytest.approx(math.log(5), abs=1e-6)
        assert chance == pytest.approx(math.log(5), abs=1e-6)  # ln C, C = 5 candidates per row
    elif loss == "margin_cosine":
        assert chance == pytest.approx(0.8)
        assert objective.structure_loss(identical, rows).item() == pytest.approx(chance, abs=1e-6)
    elif loss == "margin_euclidean":
        simplex = torch.eye(6) * (0.8 / 2) / math.sqrt(2)  # every pair at distance margin / 2
        assert chance == pytest.approx(0.8**2 / 2)
        assert objective.structure_loss(simplex, rows).item() == pytest.approx(chance, rel=1e-5)
    else:  # multi-similarity: every pair at one cosine s is blind to the graph, and shuffling changes nothing
        u, basis = torch.ones(6) / math.sqrt(6), torch.eye(6)
        for s in (0.0, 0.3, 0.9):
            shared = math.sqrt(s) * u + math.sqrt(1 - s) * basis  # every pair at cosine s
            value = objective.structure_loss(shared, rows).item()
            assert objective.chance(shared, rows).item() == pytest.approx(value, rel=1e-5)


def test_multi_similarity_chance_is_the_loss_with_the_graph_shuffled() -> None:
    """Chance reads the embedding's own geometry: two tight clusters that follow the graph score far below
    it, the same vectors placed against the graph score above the graph-following ones, and computing it
    leaves the global RNG where it was (a resumed run draws the same batches)."""
    adjacency = torch.zeros(8, 8, dtype=torch.bool)
    for group in ((0, 1, 2, 3), (4, 5, 6, 7)):
        for a in group:
            for b in group:
                adjacency[a, b] = a != b
    rows = {"adjacency": adjacency}
    objective = StructureObjective("multi_similarity")
    torch.manual_seed(3)
    centres = F.normalize(torch.randn(2, 16), dim=-1)
    aligned = centres[[0, 0, 0, 0, 1, 1, 1, 1]] + 0.05 * torch.randn(8, 16)
    against = aligned[[0, 4, 1, 5, 2, 6, 3, 7]]  # each cluster now splits across both groups
    state = torch.get_rng_state()
    chance = objective.chance(aligned, rows)
    assert torch.equal(torch.get_rng_state(), state)
    assert not chance.requires_grad
    loss = objective.structure_loss(aligned, rows).item()
    assert loss < 0.5 * chance.item()
    assert objective.structure_loss(against, rows).item() > loss
    assert objective.chance(against, rows).item() == pytest.approx(chance.item(), rel=0.3)


def test_chance_is_zero_where_the_batch_has_nothing_to_learn() -> None:
    rows = _layout() | {"adjacency": torch.zeros(6, 6, dtype=torch.bool)}
    pooled = torch.randn(6, 5)
    assert StructureObjective("info_nce").chance(pooled, rows).item() == 0.0
    assert StructureObjective("multi_similarity").chance(pooled, rows).item() == 0.0
    no_anchor = _layout() | {
        "anchor": torch.zeros(0, dtype=torch.long),
        "positive": torch.zeros(0, dtype=torch.long),
    }
    assert StructureObjective("margin_cosine").chance(pooled, no_anchor).item() == 0.0


def test_structure_weight_ramps_linearly_from_zero() -> None:
    objective = StructureObjective("info_nce", weight=0.5, weight_warmup_steps=10)
    assert [objective.weight_at(step) for step in (0, 1, 5, 10, 11, 1000)] == [0.0, 0.05, 0.25, 0.5, 0.5, 0.5]
    assert objective.combine(torch.tensor(2.0), torch.tensor(4.0), step=5).item() == pytest.approx(
        0.75 * 2.0 + 0.25 * 4.0
    )
    assert objective.combine(torch.tensor(2.0), torch.tensor(4.0), step=0).item() == 2.0  # MLM alone
    assert StructureObjective("info_nce", weight=0.5).weight_at(0) == 0.5  # no warm-up: full weight
    with pytest.raises(ValueError, match="warm-up"):
        StructureObjective("info_nce", weight_warmup_steps=-1)


def test_link_mrr_equals_the_link_task_retrieval() -> None:
    """The training-time link MRR is the evaluation's (cosine, nothing excluded), ties included: vectors
    on a coarse integer grid make many similarities equal."""
    rng = np.random.default_rng(0)
    x = rng.integers(-1, 2, size=(60, 3)).astype(np.float64)  # [N, D], ties and a zero row or two
    queries = np.array([0, 3, 7, 11, 20, 42])
    relevant = [rng.choice(60, size=int(rng.integers(1, 6)), replace=False) for _ in queries]
    relevant[2] = np.array([7])  # only itself: skipped by both
    expected = link_retrieval(x, queries, relevant)["mrr"]
    assert link_mrr(x, queries, relevant) == pytest.approx(expected, abs=1e-12)
    assert link_mrr(x, queries[:1], [np.array([0])]) is None
