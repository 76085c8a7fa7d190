"""Metric-learning losses over a graph of sequences (structure-inducing pretraining, McDermott et al.).

Each loss takes pooled sequence embeddings and which of them the graph links; the combined objective
(1 − λ)·MLM + λ·structure is assembled by the training model. Shapes: B embeddings of width D.

Edge weights enter through sampling only (seqstruct.data.graph.sample_contrast draws each anchor's
positive in proportion to them), for every loss here. The in-batch losses read a boolean adjacency on
purpose: a heavier edge already puts its pair into more batches, and weighting its term as well would
count the weight twice (its square, in effect); weights are also relative per anchor, so they have no
common scale to weigh one anchor's pairs against another's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def margin_contrastive_loss(
    anchor: Tensor, positive: Tensor, negatives: Tensor, margin: float = 1.0
) -> Tensor:
    """Contrastive loss on Euclidean distance (Hadsell, Chopra & LeCun 2006; the structure-inducing
    paper's choice): positives are pulled to distance 0, negatives pushed beyond `margin`.

        L = mean_a ‖e_a − e_p‖²  +  mean_{a,k} max(0, margin − ‖e_a − e_{n_k}‖)²

    anchor, positive [A, D]; negatives [A, K, D] -> scalar.
    Example: margin_contrastive_loss(z[anchors], z[positives], z[negatives]) with z = pooled embeddings.
    """
    pull = (anchor - positive).pow(2).sum(-1).mean()
    distance = (anchor.unsqueeze(1) - negatives).pow(2).sum(-1).clamp_min(1e-12).sqrt()  # [A, K]
    push = F.relu(margin - distance).pow(2).mean()
    return pull + push


def margin_contrastive_in_batch_loss(
    embeddings: Tensor, anchor: Tensor, positive: Tensor, linked: Tensor, margin: float = 1.0
) -> Tensor:
    """The contrastive margin loss with the batch as negatives: every row not linked to the anchor.

        L = mean_a ‖e_a − e_p(a)‖²  +  mean_{a, j ∉ N(a) ∪ {a}} max(0, margin − ‖e_a − e_j‖)²

    embeddings [R, D]; anchor, positive [A] row indices; linked [R, R] boolean (the graph restricted to
    the batch; the diagonal is ignored) -> scalar. The same fixed point as `margin_contrastive_loss`
    without paying a forward pass per sampled negative.
    """
    linked = _check_positives(embeddings, linked)
    pull = (embeddings[anchor] - embeddings[positive]).pow(2).sum(-1).mean()
    eye = torch.eye(len(embeddings), dtype=torch.bool, device=embeddings.device)
    negatives = (~linked & ~eye)[anchor]  # [A, R]
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


def graph_info_nce_loss(embeddings: Tensor, positives: Tensor, temperature: float = 0.05) -> Tensor:
    """InfoNCE with graph positives: every in-batch neighbour is a positive, every other sequence a
    negative (the multi-positive form of Khosla et al. 2020, "Supervised Contrastive Learning").

        s_ij = cos(e_i, e_j) / τ,   L_i = −1/|P_i| Σ_{p ∈ P_i} log( exp s_ip / Σ_{j ≠ i} exp s_ij )

    averaged over anchors with at least one positive in the batch. embeddings [B, D]; positives [B, B]
    boolean (the graph restricted to the batch; the diagonal is ignored) -> scalar.
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


def multi_similarity_loss(
    embeddings: Tensor,
    positives: Tensor,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 0.5,
    epsilon: float = 0.1,
) -> Tensor:
    """Multi-similarity loss with graph positives (Wang et al. 2019), with its pair mining.

    On cosine similarities S, for anchor i: keep negatives n with S_in + ε > min_p S_ip and positives p
    with S_ip − ε < max_n S_in (the informative pairs), then

        L_i = 1/α log(1 + Σ_p exp(−α (S_ip − base))) + 1/β log(1 + Σ_n exp(β (S_in − base)))

    averaged over anchors with at least one positive and one negative. embeddings [B, D]; positives
    [B, B] boolean -> scalar. Defaults are the paper's α, β and pytorch-metric-learning's base and ε.
    """
    positives = _check_positives(embeddings, positives)
    z = F.normalize(embeddings, dim=-1)
    sim = z @ z.T  # [B, B]
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    negatives = ~positives & ~eye
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


STRUCTURE_LOSSES = {
    "margin": margin_contrastive_loss,  # margin_contrastive_in_batch_loss when no negatives are sampled
    "info_nce": graph_info_nce_loss,
    "multi_similarity": multi_similarity_loss,
}


@dataclass(frozen=True)
class StructureObjective:
    """The structure term of structure-inducing pretraining and its combination with masked-LM.

        loss = (1 − λ)·L_MLM + λ·L_structure(pool(h))

    `pooled` [R, D] are the pooled final hidden states of a batch built by
    `seqstruct.data.structure.GraphContrastCollator`; `rows` its `structure_*` entries (prefix removed).
    The margin loss reads the sampled anchor/positive/negative rows (or, with no sampled negatives, takes
    every unlinked row of the batch as one); the in-batch losses read the batch's adjacency, where every
    linked pair is a positive and every other pair a negative.
    """

    loss: str = "margin"
    weight: float = 0.5  # λ
    margin: float = 1.0
    temperature: float = 0.05

    def __post_init__(self) -> None:
        if self.loss not in STRUCTURE_LOSSES:
            raise ValueError(
                f"unknown structure loss {self.loss!r}; expected one of {sorted(STRUCTURE_LOSSES)}"
            )
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"structure weight (lambda) must be in [0, 1]; got {self.weight}")

    def structure_loss(self, pooled: Tensor, rows: dict[str, Tensor]) -> Tensor:
        pooled = pooled.float()  # distances and exponentials of similarities lose too much in bf16
        if self.loss == "margin":
            if rows["anchor"].numel() == 0:
                return pooled.sum() * 0.0  # no anchor in this batch has a neighbour
            if rows["negative"].shape[1] == 0:  # structure.negatives = 0: the batch supplies them
                return margin_contrastive_in_batch_loss(
                    pooled, rows["anchor"], rows["positive"], rows["adjacency"], self.margin
                )
            return margin_contrastive_loss(
                pooled[rows["anchor"]], pooled[rows["positive"]], pooled[rows["negative"]], self.margin
            )
        if self.loss == "info_nce":
            return graph_info_nce_loss(pooled, rows["adjacency"], self.temperature)
        return multi_similarity_loss(pooled, rows["adjacency"])

    def combine(self, mlm_loss: Tensor, structure_loss: Tensor) -> Tensor:
        return (1.0 - self.weight) * mlm_loss + self.weight * structure_loss
