"""The masked-LM objective's held-out metrics, and the unigram-frequency baseline they must beat.

The baseline is scored on the very positions the model is scored on, so the two can be compared pair by
pair: the gain is reported with a standard error clustered by protein (positions within one protein are
not independent draws).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from seqstruct.data.collate import IGNORE_INDEX
from seqstruct.data.tokenizers import RESIDUES, is_protein_tokenizer


def token_predictions(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Reduce (B, L, V) logits to (B, L, 2): [argmax id, negative log-likelihood of the label].

    Used as the Trainer's `preprocess_logits_for_metrics`, so evaluation keeps two numbers per position
    instead of the whole vocabulary.
    """
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # (B, L, V)
    safe_labels = labels.clamp(min=0)  # IGNORE_INDEX rows are gathered harmlessly, then dropped later
    nll = -log_probs.gather(-1, safe_labels.unsqueeze(-1)).squeeze(-1)  # (B, L)
    return torch.stack([logits.argmax(-1).float(), nll], dim=-1)


@dataclass(frozen=True)
class Unigram:
    """A model that ignores context: every residue gets its training frequency (add-one smoothed), and the
    prediction is always the most frequent training residue."""

    log_probs: np.ndarray  # (V,) log-probability of each vocabulary id; -inf for non-residue tokens
    most_frequent: int  # vocabulary id of the most frequent training residue

    @classmethod
    def fit(cls, sequences: Iterable[str], tokenizer: PreTrainedTokenizerBase) -> Unigram:
        if not is_protein_tokenizer(tokenizer):
            return cls._fit_tokens(sequences, tokenizer)
        counts: Counter[str] = Counter()
        for sequence in sequences:
            counts.update(sequence)
        ids = tokenizer.convert_tokens_to_ids(list(RESIDUES))
        smoothed = np.array([counts[r] + 1.0 for r in RESIDUES])
        log_probs = np.full(len(tokenizer), -np.inf)
        log_probs[ids] = np.log(smoothed / smoothed.sum())
        return cls(log_probs, ids[int(np.argmax(smoothed))])

    @classmethod
    def _fit_tokens(cls, texts: Iterable[str], tokenizer: PreTrainedTokenizerBase) -> Unigram:
        """Text: frequencies of the tokenizer's non-special tokens, add-one smoothed over them."""
        counts = np.zeros(len(tokenizer))
        for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
            np.add.at(counts, ids, 1.0)
        special = list(set(tokenizer.all_special_ids))
        smoothed = counts + 1.0
        smoothed[special] = 0.0
        with np.errstate(divide="ignore"):
            log_probs = np.log(smoothed / smoothed.sum())
        return cls(log_probs, int(np.argmax(smoothed)))


def clustered_mean(values: np.ndarray, scored: np.ndarray) -> tuple[float, float]:
    """Mean of `values` over scored positions and its standard error with rows (proteins) as clusters.

    values, scored: (N, L). The ratio estimator sum(d_i) / sum(n_i) over rows i, with the cluster-robust
    variance sum((d_i - mean * n_i)^2) * N / (N - 1) / sum(n_i)^2.
    """
    d = np.where(scored, values, 0.0).sum(axis=1)  # (N,)
    n = scored.sum(axis=1)  # (N,)
    mean = float(d.sum() / n.sum())
    rows = int((n > 0).sum())
    if rows < 2:
        return mean, math.nan
    variance = float(((d - mean * n) ** 2).sum()) * rows / (rows - 1) / float(n.sum()) ** 2
    return mean, math.sqrt(variance)


def masked_lm_metrics(
    predictions: np.ndarray, labels: np.ndarray, unigram: Unigram | None = None
) -> dict[str, float]:
    """Accuracy and perplexity over the positions that carry a label (token-weighted, not batch-weighted);
    with `unigram`, the baseline's on the same positions and the paired gains with clustered errors.

    predictions: (N, L, 2) from `token_predictions`; labels: (N, L) with IGNORE_INDEX elsewhere; one row
    per protein.
    """
    scored = labels != IGNORE_INDEX
    if not scored.any():
        raise ValueError("no masked positions in the evaluation set")
    correct = (predictions[..., 0] == labels).astype(float)  # (N, L)
    nll = predictions[..., 1].astype(float)  # (N, L)
    metrics = {
        "masked_accuracy": clustered_mean(correct, scored)[0],
        "perplexity": math.exp(clustered_mean(nll, scored)[0]),
        "masked_tokens": int(scored.sum()),
    }
    if unigram is not None:
        safe = np.where(scored, labels, unigram.most_frequent)
        base_correct = (safe == unigram.most_frequent).astype(float)
        base_nll = -unigram.log_probs[safe]
        accuracy_gain, accuracy_se = clustered_mean(correct - base_correct, scored)
        nll_gain, nll_se = clustered_mean(base_nll - nll, scored)
        metrics |= {
            "unigram_accuracy": clustered_mean(base_correct, scored)[0],
            "unigram_perplexity": math.exp(clustered_mean(base_nll, scored)[0]),
            "accuracy_gain": accuracy_gain,
            "accuracy_gain_se": accuracy_se,
            "nll_gain": nll_gain,  # nats per masked residue the model saves over the baseline
            "nll_gain_se": nll_se,
        }
    return metrics
