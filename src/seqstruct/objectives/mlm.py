"""The masked-LM objective's held-out metrics, and the unigram-frequency baseline they must beat."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

import numpy as np
import torch

from seqstruct.data.collate import IGNORE_INDEX


def token_predictions(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Reduce (B, L, V) logits to (B, L, 2): [argmax id, negative log-likelihood of the label].

    Used as the Trainer's `preprocess_logits_for_metrics`, so evaluation keeps two numbers per position
    instead of the whole vocabulary.
    """
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # (B, L, V)
    safe_labels = labels.clamp(min=0)  # IGNORE_INDEX rows are gathered harmlessly, then dropped later
    nll = -log_probs.gather(-1, safe_labels.unsqueeze(-1)).squeeze(-1)  # (B, L)
    return torch.stack([logits.argmax(-1).float(), nll], dim=-1)


def masked_lm_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and perplexity over the positions that carry a label (token-weighted, not batch-weighted).

    predictions: (N, L, 2) from `token_predictions`; labels: (N, L) with IGNORE_INDEX elsewhere.
    """
    scored = labels != IGNORE_INDEX
    if not scored.any():
        raise ValueError("no masked positions in the evaluation set")
    predicted, nll = predictions[..., 0][scored], predictions[..., 1][scored]
    mean_nll = float(nll.mean())
    return {
        "masked_accuracy": float((predicted == labels[scored]).mean()),
        "perplexity": math.exp(mean_nll),
        "masked_tokens": int(scored.sum()),
    }


def unigram_baseline(train_tokens: Iterable[str], eval_labels: Iterable[str]) -> dict[str, float]:
    """The score of a model that ignores context: it always predicts the training set's most frequent
    residue (accuracy) and assigns each residue its training frequency (perplexity).

    Add-one smoothing keeps a residue unseen in training from giving an infinite perplexity.
    """
    counts = Counter()
    for chunk in train_tokens:
        counts.update(chunk)
    eval_counts = Counter()
    for chunk in eval_labels:
        eval_counts.update(chunk)
    vocabulary = set(counts) | set(eval_counts)
    total = sum(counts.values()) + len(vocabulary)
    n_eval = sum(eval_counts.values())
    if n_eval == 0:
        raise ValueError("no evaluation labels for the unigram baseline")
    most_frequent = counts.most_common(1)[0][0]
    cross_entropy = -sum(n * math.log((counts[t] + 1) / total) for t, n in eval_counts.items()) / n_eval
    return {
        "masked_accuracy": eval_counts[most_frequent] / n_eval,
        "perplexity": math.exp(cross_entropy),
        "most_frequent": most_frequent,
    }
