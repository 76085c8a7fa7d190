"""The contrastive objective for sentence embeddings: InfoNCE with in-batch negatives (SimCSE).

For a batch of B anchors a_i with positives p_i (and, optionally, one hard negative n_i each), with cosine
similarity s(x, y) and temperature tau, the loss is

    L = -1/B sum_i log( exp(s(a_i, p_i)/tau) / (sum_j exp(s(a_i, p_j)/tau) + sum_j exp(s(a_i, n_j)/tau)) )

that is, cross-entropy over the B (or 2B) candidates of each anchor, its own positive the right answer and
everything else in the batch a negative: van den Oord et al. 2018 (InfoNCE, arXiv:1807.03748); Gao, Yao and
Chen 2021, "SimCSE: Simple Contrastive Learning of Sentence Embeddings" (EMNLP, arXiv:2104.08821), section
3 (unsupervised) and section 4 (supervised, with hard negatives), tau = 0.05 there.

This is sentence-transformers' MultipleNegativesRankingLoss with `scale = 1 / tau` and its defaults
(cosine similarity, the query -> document direction, one joint softmax); the hard negatives are its third
input column. It is used as is, not re-written.

Unsupervised SimCSE feeds the same text as anchor and positive: the encoder's dropout, different in the two
forward passes because the Trainer keeps the model in train mode, is the only augmentation. Without dropout
the two embeddings coincide, every s(a_i, p_i) is 1 (the largest a cosine can be) and the loss reduces to
mean_i logsumexp_j(s(a_i, a_j) / tau) - 1 / tau, the value at perfect alignment: `aligned_loss`. Two cases
to check by hand: B mutually orthogonal embeddings give log(1 + (B - 1) exp(-1 / tau)), B identical ones
log B.

sentence-transformers may embed the anchor and positive columns in one merged forward pass (2B rows); the
dropout masks are drawn per row, so the two views of a text still differ.

Example:
    >>> from sentence_transformers import SentenceTransformer
    >>> model = SentenceTransformer("path/to/model")
    >>> loss = contrastive_loss(model, temperature=0.05)
    >>> # SentenceTransformerTrainer(model=model, train_dataset=pairs, loss=loss); pairs: anchor, positive
"""

from __future__ import annotations

import math

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from sentence_transformers.util import cos_sim

DEFAULT_TEMPERATURE = 0.05  # SimCSE's tau for both settings


def contrastive_loss(
    model: SentenceTransformer, temperature: float = DEFAULT_TEMPERATURE
) -> MultipleNegativesRankingLoss:
    """InfoNCE with in-batch negatives (hard negatives from a third column) at temperature `temperature`."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number; got {temperature!r}")
    return MultipleNegativesRankingLoss(model, scale=1.0 / temperature, similarity_fct=cos_sim)


def aligned_loss(embeddings: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
    """The InfoNCE loss when every positive equals its anchor: embeddings [B, D] -> scalar.

    mean_i logsumexp_j(cos(e_i, e_j) / tau) - 1 / tau. The cosine of a vector with itself is 1, the most a
    cosine can be, so each positive's logit is the largest possible; what is left is the uniformity term.
    """
    logits = cos_sim(embeddings, embeddings) / temperature  # [B, B]
    return (torch.logsumexp(logits, dim=1) - 1.0 / temperature).mean()


def encoder_dropout(encoder: torch.nn.Module) -> float:
    """The largest dropout probability anywhere in `encoder` (0.0 when it has none)."""
    found = [m.p for m in encoder.modules() if isinstance(m, torch.nn.Dropout)]
    # ESM's self-attention keeps its attention-probability dropout as a float attribute, not a module.
    found += [m.dropout for m in encoder.modules() if isinstance(getattr(m, "dropout", None), float)]
    return max(found, default=0.0)


def set_encoder_dropout(encoder: torch.nn.Module, p: float) -> None:
    """Set every hidden and attention dropout of a transformers encoder to `p`, and its config to match.

    Unsupervised SimCSE needs dropout (it is the augmentation) where a model may have been saved without
    it: our protein encoders train without dropout, as ESM-2 does.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1); got {p!r}")
    for module in encoder.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
        elif isinstance(getattr(module, "dropout", None), float):
            module.dropout = p
    config = getattr(encoder, "config", None)
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        if config is not None and hasattr(config, key):
            setattr(config, key, p)
