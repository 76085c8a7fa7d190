"""Metric-learning losses over a graph of sequences (structure-inducing pretraining, McDermott et al.),
each with its "knows nothing" value, and the held-out link MRR that says whether the embedding learned
the graph.

Each loss takes pooled sequence embeddings and which of them the graph links; the combined objective
(1 − λ)·MLM + λ·structure is assembled by the training model. Shapes: B embeddings of width D.

Geometry. Every loss but `margin_euclidean` compares directions only (cosine), so it is invariant to the
scale of the pooled vectors and bounded: a fresh encoder's pooled vectors have norms near 17 and sit
about 5 apart, and the paper's Euclidean margin loss (kept as `margin_euclidean`) then starts at ~30 against
a masked-LM loss of ~3, dominates warm-up under gradient clipping and collapses the pooled spread
(issue 21). The cosine `margin_cosine` loss has a fixed margin on the cosine distance 1 − cos ∈ [0, 2] rather
than one relative to the first batch's distances: it is scale-free already, and a fixed number needs no
state saved for a resumed run or agreed between DDP ranks (a fresh encoder's vectors are nearly parallel,
so a margin relative to their distances would be near 0). Its pull is linear in the distance, not
squared, so the least similar positives are not the ones pulled hardest.

Chance. `chance` is each loss's value for an embedding that ignores the graph, for all but
multi-similarity a pure function of the batch layout: InfoNCE with C candidates per anchor, ln C (all similarities equal; by Jensen no embedding
blind to the graph expects less, a positive being exchangeable with any other candidate); a margin loss,
its least value at one distance d shared by every pair, min_d f(d) (positives and negatives then share one
distance distribution, so E f(d) ≥ min f). Multi-similarity has no such one value: at a shared
similarity s its value depends on s, and a fresh encoder's near-parallel vectors score well above its least
value over s (0.74 against 0.48 on the manifold graphs), so that floor would call a run stuck while it
learns. Its chance is a permutation null instead: the loss of the same vectors shuffled against the graph,
which keeps their geometry and removes only their agreement with the edges. A training loss that stays at
its chance value has learned nothing of the graph. A node drawn twice into
a batch is its own positive, which an embedding can find without the graph; on large graphs that is rare.

Edge weights enter through sampling only (seqstruct.data.graph.sample_contrast draws each anchor's
positive in proportion to them), for every loss here. The in-batch losses read a boolean adjacency on
purpose: a heavier edge already puts its pair into more batches, and weighting its term as well would
count the weight twice (its square, in effect); weights are also relative per anchor, so they have no
common scale to weigh one anchor's pairs against another's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.preprocessing import normalize
from torch import Tensor

# ---------------------------------------------------------------------------------------------------
# Margin losses: cosine (the default geometry) and the paper's Euclidean form
# ---------------------------------------------------------------------------------------------------


def cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """1 − cos(a, b) along the last dimension (broadcast), in [0, 2]; [..., D] x [..., D] -> [...]."""
    return 1.0 - (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1)


def margin_loss(anchor: Tensor, positive: Tensor, negatives: Tensor, margin: float = 1.0) -> Tensor:
    """Contrastive margin loss on cosine distance d = 1 − cos: positives pulled to d = 0, negatives pushed
    beyond d = `margin` (1.0: at least orthogonal), both terms linear in d.

        L = mean_a d(e_a, e_p)  +  mean_{a,k} max(0, margin − d(e_a, e_{n_k}))

    anchor, positive [A, D]; negatives [A, K, D] -> scalar in [0, 2 + margin], the same for any scale of
    the embeddings. Chance: at one shared distance d, d + max(0, margin − d) ≥ margin (margin ≤ 2).
    """
    pull = cosine_distance(anchor, positive).mean()
    push = F.relu(margin - cosine_distance(anchor.unsqueeze(1), negatives)).mean()  # [A, K] -> scalar
    return pull + push


def margin_in_batch_loss(
    embeddings: Tensor, anchor: Tensor, positive: Tensor, linked: Tensor, margin: float = 1.0
) -> Tensor:
    """`margin_loss` with the batch as negatives: every row not linked to the anchor.

    embeddings [R, D]; anchor, positive [A] row indices; linked [R, R] boolean (the graph restricted to
    the batch; the diagonal is ignored) -> scalar.
    """
    linked = _check_positives(embeddings, linked)
    pull = cosine_distance(embeddings[anchor], embeddings[positive]).mean()
    negatives = _unlinked(linked)[anchor]  # [A, R]
    if not negatives.any():
        return pull
    z = F.normalize(embeddings, dim=-1)
    distance = 1.0 - z[anchor] @ z.T  # [A, R]
    return pull + F.relu(margin - distance)[negatives].mean()


def margin_euclidean_loss(anchor: Tensor, positive: Tensor, negatives: Tensor, margin: float = 1.0) -> Tensor:
    """Contrastive loss on Euclidean distance (Hadsell, Chopra & LeCun 2006; the structure-inducing
    paper's choice): positives are pulled to distance 0, negatives pushed beyond `margin`.

        L = mean_a ‖e_a − e_p‖²  +  mean_{a,k} max(0, margin − ‖e_a − e_{n_k}‖)²

    anchor, positive [A, D]; negatives [A, K, D] -> scalar. Not scale-free: on unnormalised pooled
    vectors its value is set by their norms as much as by the graph. Chance: at one shared distance d,
    d² + max(0, margin − d)² ≥ margin²/2 (at d = margin/2).
    Example: margin_euclidean_loss(z[anchors], z[positives], z[negatives]) with z = pooled embeddings.
    """
    pull = (anchor - positive).pow(2).sum(-1).mean()
    distance = (anchor.unsqueeze(1) - negatives).pow(2).sum(-1).clamp_min(1e-12).sqrt()  # [A, K]
    push = F.relu(margin - distance).pow(2).mean()
    return pull + push


def margin_euclidean_in_batch_loss(
    embeddings: Tensor, anchor: Tensor, positive: Tensor, linked: Tensor, margin: float = 1.0
) -> Tensor:
    """`margin_euclidean_loss` with the batch as negatives: every row not linked to the anchor.

        L = mean_a ‖e_a − e_p(a)‖²  +  mean_{a, j ∉ N(a) ∪ {a}} max(0, margin − ‖e_a − e_j‖)²

    embeddings [R, D]; anchor, positive [A] row indices; linked [R, R] boolean -> scalar. The same fixed
    point as `margin_euclidean_loss` without paying a forward pass per sampled negative.
    """
    linked = _check_positives(embeddings, linked)
    pull = (embeddings[anchor] - embeddings[positive]).pow(2).sum(-1).mean()
    negatives = _unlinked(linked)[anchor]  # [A, R]
    if not negatives.any():
        return pull
    distance = (embeddings[anchor].unsqueeze(1) - embeddings.unsqueeze(0)).pow(2).sum(-1)  # [A, R]
    push = F.relu(margin - distance.clamp_min(1e-12).sqrt()).pow(2)
    return pull + push[negatives].mean()


def _check_positives(embeddings: Tensor, positives: Tensor) -> Tensor:
    batch = embeddings.shape[0]
    if positives.shape != (batch, batch):
        raise ValueError(f"positives must be [B, B] = {(batch, batch)}, got {tuple(positives.shape)}")
    eye = torch.eye(batch, dtype=torch.bool, device=embeddings.device)
    return positives.to(torch.bool) & ~eye


def _unlinked(linked: Tensor) -> Tensor:
    """[R, R] boolean: the pairs that are neither linked nor a row with itself."""
    eye = torch.eye(len(linked), dtype=torch.bool, device=linked.device)
    return ~linked & ~eye


# ---------------------------------------------------------------------------------------------------
# In-batch losses on cosine similarity
# ---------------------------------------------------------------------------------------------------


def graph_info_nce_loss(embeddings: Tensor, positives: Tensor, temperature: float = 0.05) -> Tensor:
    """InfoNCE with graph positives: every in-batch neighbour is a positive, every other sequence a
    negative (the multi-positive form of Khosla et al. 2020, "Supervised Contrastive Learning").

        s_ij = cos(e_i, e_j) / τ,   L_i = −1/|P_i| Σ_{p ∈ P_i} log( exp s_ip / Σ_{j ≠ i} exp s_ij )

    averaged over anchors with at least one positive in the batch. embeddings [B, D]; positives [B, B]
    boolean (the graph restricted to the batch; the diagonal is ignored) -> scalar in
    [0, ln(B − 1) + 2/τ]. Chance: ln(B − 1), the B − 1 candidates of each row.
    """
    positives = _check_positives(embeddings, positives)
    z = F.normalize(embeddings, dim=-1)
    logits = z @ z.T / temperature  # [B, B]
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    log_prob = logits.masked_fill(eye, float("-inf")).log_softmax(dim=-1)
    counts = positives.sum(-1)
    has = counts > 0
    if not has.any():
        return embeddings.sum() * 0.0  # no graph edge in this batch: nothing to learn, keep the graph
    per_anchor = -(log_prob.masked_fill(~positives, 0.0).sum(-1)[has] / counts[has])
    return per_anchor.mean()


# The multi-similarity loss's hyperparameters: the paper's α, β and pytorch-metric-learning's base and ε.
MS_ALPHA, MS_BETA, MS_BASE, MS_EPSILON = 2.0, 50.0, 0.5, 0.1


def multi_similarity_loss(
    embeddings: Tensor,
    positives: Tensor,
    alpha: float = MS_ALPHA,
    beta: float = MS_BETA,
    base: float = MS_BASE,
    epsilon: float = MS_EPSILON,
) -> Tensor:
    """Multi-similarity loss with graph positives (Wang et al. 2019), with its pair mining.

    On cosine similarities S, for anchor i: keep negatives n with S_in + ε > min_p S_ip and positives p
    with S_ip − ε < max_n S_in (the informative pairs), then

        L_i = 1/α log(1 + Σ_p exp(−α (S_ip − base))) + 1/β log(1 + Σ_n exp(β (S_in − base)))

    averaged over anchors with at least one positive and one negative. embeddings [B, D]; positives
    [B, B] boolean -> scalar.
    """
    positives = _check_positives(embeddings, positives)
    z = F.normalize(embeddings, dim=-1)
    sim = z @ z.T  # [B, B]
    negatives = _unlinked(positives)
    inf = torch.tensor(float("inf"), device=z.device, dtype=sim.dtype)
    hardest_positive = torch.where(positives, sim, inf).amin(-1, keepdim=True)  # [B, 1]
    hardest_negative = torch.where(negatives, sim, -inf).amax(-1, keepdim=True)
    keep_neg = negatives & (sim + epsilon > hardest_positive)
    keep_pos = positives & (sim - epsilon < hardest_negative)
    valid = positives.any(-1) & negatives.any(-1)
    if not valid.any():
        return embeddings.sum() * 0.0
    zero = torch.zeros((), device=z.device, dtype=sim.dtype)
    pos_term = torch.where(keep_pos, torch.exp(-alpha * (sim - base)), zero).sum(-1)
    neg_term = torch.where(keep_neg, torch.exp(beta * (sim - base)), zero).sum(-1)
    per_anchor = torch.log1p(pos_term) / alpha + torch.log1p(neg_term) / beta
    return per_anchor[valid].mean()


# ---------------------------------------------------------------------------------------------------
# Chance: each loss at an embedding that ignores the graph
# ---------------------------------------------------------------------------------------------------


def info_nce_chance(positives: Tensor) -> Tensor:
    """ln(R − 1) for a batch of R rows with at least one linked pair (positives [R, R]), else 0 (the loss
    is then 0 too): the loss when every similarity is the same."""
    rows = len(positives)
    if rows < 2:
        return positives.new_zeros((), dtype=torch.float32)
    has = _check_positives(positives, positives).any()
    return torch.where(has, math.log(rows - 1), 0.0).float()


# Shuffles averaged by multi_similarity_chance: the batch's edges are fixed, so a few suffice per step,
# and the logged chance is a window's mean over many steps.
MS_CHANCE_SHUFFLES = 8


def multi_similarity_chance(
    embeddings: Tensor, positives: Tensor, shuffles: int = MS_CHANCE_SHUFFLES
) -> Tensor:
    """The multi-similarity loss of these embeddings with the graph ignored: the mean loss over `shuffles`
    seeded permutations of the rows against the adjacency (a permutation null). A shuffle keeps the
    vectors, so their spread and similarities, and breaks only which of them the graph links; loss / chance
    below 1 is agreement with the graph. The generator is a fixed local one, so the global RNG, and with
    it an interrupted run's resume, is untouched. embeddings [R, D]; positives [R, R] boolean -> scalar
    (no gradient); 0 where no anchor has both a positive and a negative (the loss is 0 too)."""
    positives = _check_positives(embeddings, positives)
    if not (positives.any(-1) & _unlinked(positives).any(-1)).any():
        return embeddings.new_zeros((), dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    rows = len(embeddings)
    with torch.no_grad():
        values = [
            multi_similarity_loss(
                embeddings[torch.randperm(rows, generator=generator).to(embeddings.device)], positives
            )
            for _ in range(shuffles)
        ]
    return torch.stack(values).mean().float()


# ---------------------------------------------------------------------------------------------------
# Held-out link retrieval during training
# ---------------------------------------------------------------------------------------------------


def link_mrr(embeddings: np.ndarray, queries: np.ndarray, relevant: Sequence[np.ndarray]) -> float | None:
    """Mean reciprocal rank of each query's first relevant node, every other row a candidate by cosine.

    embeddings [N, D]; queries [Q] row indices; relevant[i] the rows relevant to queries[i]. Equal
    similarities rank by row index, lower first; queries with no relevant row but themselves are skipped;
    None when none is left. This is the `mrr` of seqstruct.evaluation.structure.link_retrieval with
    nothing excluded (the tests hold the two equal), here because training, which logs it at every
    evaluation, sits below evaluation in the house.
    """
    x = normalize(np.asarray(embeddings, dtype=np.float64))  # as the search does: a zero row stays zero
    queries = np.asarray(queries, dtype=np.int64)
    sims = x[queries] @ x.T  # [Q, N]
    reciprocal = []
    for scores, query, targets in zip(sims, queries, relevant, strict=True):
        targets = np.setdiff1d(np.asarray(targets, dtype=np.int64), [query])
        if not len(targets):
            continue
        scores[query] = -np.inf  # never its own hit
        values = scores[targets]
        best = np.lexsort((targets, -values))[0]  # most similar relevant row, then lowest index
        value, index = values[best], targets[best]
        ahead = (scores > value).sum() + (scores[:index] == value).sum()
        reciprocal.append(1.0 / (ahead + 1))
    return float(np.mean(reciprocal)) if reciprocal else None


# ---------------------------------------------------------------------------------------------------
# The objective
# ---------------------------------------------------------------------------------------------------

# Loss names whose meaning changed: refused by name, so that a config or a run written before the change
# fails loudly instead of resuming under another loss.
RENAMED_LOSSES = {
    "margin": "'margin' was the paper's Euclidean margin loss until issue 21; say margin_euclidean for it, or "
    "margin_cosine for the scale-free cosine version",
}

STRUCTURE_LOSSES = {
    "info_nce": graph_info_nce_loss,
    "margin_cosine": margin_loss,  # margin_in_batch_loss when no negatives are sampled
    "margin_euclidean": margin_euclidean_loss,  # margin_euclidean_in_batch_loss likewise
    "multi_similarity": multi_similarity_loss,
}


@dataclass(frozen=True)
class StructureObjective:
    """The structure term of structure-inducing pretraining and its combination with masked-LM.

        loss = (1 − λ_t)·L_MLM + λ_t·L_structure(pool(h)),   λ_t = λ · min(1, t / weight_warmup_steps)

    at optimiser step t: the structure term enters from 0, as the learning rate does under a linear
    warm-up, so the untrained encoder's first gradients are not the metric loss's alone.
    `pooled` [R, D] are the pooled final hidden states of a batch built by
    `seqstruct.data.structure.GraphContrastCollator`; `rows` its `structure_*` entries (prefix removed).
    The margin losses read the sampled anchor/positive/negative rows (or, with no sampled negatives, take
    every unlinked row of the batch as one); the in-batch losses read the batch's adjacency, where every
    linked pair is a positive and every other pair a negative.
    """

    loss: str = "info_nce"
    weight: float = 0.5  # λ after the warm-up
    margin: float = 1.0  # cosine distance for `margin_cosine`, Euclidean for `margin_euclidean`
    temperature: float = 0.05
    weight_warmup_steps: int = 0  # optimiser steps over which λ ramps from 0; 0: λ from the first step

    def __post_init__(self) -> None:
        if self.loss in RENAMED_LOSSES:
            raise ValueError(f"structure loss: {RENAMED_LOSSES[self.loss]}")
        if self.loss not in STRUCTURE_LOSSES:
            raise ValueError(
                f"unknown structure loss {self.loss!r}; expected one of {sorted(STRUCTURE_LOSSES)}"
            )
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"structure weight (lambda) must be in [0, 1]; got {self.weight}")
        if self.weight_warmup_steps < 0:
            raise ValueError(f"structure weight warm-up must be >= 0 steps; got {self.weight_warmup_steps}")

    def structure_loss(self, pooled: Tensor, rows: dict[str, Tensor]) -> Tensor:
        pooled = pooled.float()  # distances and exponentials of similarities lose too much in bf16
        if self.loss in ("margin_cosine", "margin_euclidean"):
            if rows["anchor"].numel() == 0:
                return pooled.sum() * 0.0  # no anchor in this batch has a neighbour
            if rows["negative"].shape[1] == 0:  # structure.negatives = 0: the batch supplies them
                in_batch = (
                    margin_in_batch_loss if self.loss == "margin_cosine" else margin_euclidean_in_batch_loss
                )
                return in_batch(pooled, rows["anchor"], rows["positive"], rows["adjacency"], self.margin)
            sampled = margin_loss if self.loss == "margin_cosine" else margin_euclidean_loss
            return sampled(
                pooled[rows["anchor"]], pooled[rows["positive"]], pooled[rows["negative"]], self.margin
            )
        if self.loss == "info_nce":
            return graph_info_nce_loss(pooled, rows["adjacency"], self.temperature)
        return multi_similarity_loss(pooled, rows["adjacency"])

    def chance(self, pooled: Tensor, rows: dict[str, Tensor]) -> Tensor:
        """The structure loss of an embedding that ignores the graph, for this batch (`pooled` and `rows`
        as for `structure_loss`, over R = len(rows["adjacency"]) rows) -> scalar (module docstring). Only
        multi-similarity's reads `pooled`; the others are functions of the batch layout alone."""
        adjacency = rows["adjacency"]
        if self.loss == "info_nce":
            return info_nce_chance(adjacency)
        if self.loss == "multi_similarity":
            return multi_similarity_chance(pooled.detach().float(), adjacency)
        floor = self.margin if self.loss == "margin_cosine" else self.margin**2 / 2  # min_d f(d)
        anchor = rows["anchor"]
        if anchor.numel() == 0:
            return adjacency.new_zeros((), dtype=torch.float32)
        if rows["negative"].shape[1] > 0:
            return adjacency.new_full((), floor, dtype=torch.float32)
        has_negative = _unlinked(_check_positives(adjacency, adjacency))[anchor].any()
        return torch.where(has_negative, floor, 0.0).float()  # pull alone: 0 at d = 0

    def weight_at(self, step: int) -> float:
        """λ at optimiser step `step` (0 at the first)."""
        if self.weight_warmup_steps == 0:
            return self.weight
        return self.weight * min(1.0, step / self.weight_warmup_steps)

    def combine(self, mlm_loss: Tensor, structure_loss: Tensor, step: int) -> Tensor:
        weight = self.weight_at(step)
        return (1.0 - weight) * mlm_loss + weight * structure_loss
