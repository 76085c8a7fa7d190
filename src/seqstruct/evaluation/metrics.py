"""Evaluation metrics: multi-label function prediction as CAFA defines it (Radivojac et al. 2013; Zhou et al.
2019), ranking (MRR, nDCG@k, recall@k) and single-label classification (accuracy, macro-F1).

CAFA inputs are dense: y_true [N, T] booleans (protein i annotated with term j) and scores [N, T] in [0, 1].
Ranking inputs are relevance [Q, K] booleans: whether query q's item at rank j + 1 is relevant.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, f1_score

CAFA_THRESHOLDS = np.round(np.linspace(0.0, 1.0, 101), 2)  # 0.00, 0.01, ..., 1.00


def fmax(
    y_true: np.ndarray, scores: np.ndarray, thresholds: np.ndarray = CAFA_THRESHOLDS
) -> tuple[float, float]:
    """Protein-centric maximum F-measure and the threshold that reaches it (the lowest, on ties).

    At threshold t, P_i(t) = {j : scores_ij >= t}, T_i = {j : y_ij}:
        precision(t) = mean over proteins with |P_i(t)| > 0 of |P_i(t) ∩ T_i| / |P_i(t)|
        recall(t)    = mean over proteins with |T_i| > 0     of |P_i(t) ∩ T_i| / |T_i|
        Fmax = max_t 2·precision·recall / (precision + recall)
    Proteins without any annotation are left out, as CAFA evaluates annotated benchmarks only.
    """
    y_true = np.asarray(y_true, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if y_true.shape != scores.shape or y_true.ndim != 2:
        raise ValueError(f"y_true and scores must be [N, T] of one shape; got {y_true.shape}, {scores.shape}")
    annotated = y_true.any(axis=1)
    if not annotated.any():
        raise ValueError("no protein has an annotation: Fmax is undefined")
    y_true, scores = y_true[annotated], scores[annotated]
    truth = y_true.sum(axis=1)  # [N]
    best, best_t = 0.0, float(thresholds[0])
    for t in thresholds:
        predicted = scores >= t  # [N, T]
        hits = (predicted & y_true).sum(axis=1)  # [N]
        counts = predicted.sum(axis=1)  # [N]
        covered = counts > 0
        if not covered.any():
            continue
        precision = float((hits[covered] / counts[covered]).mean())
        recall = float((hits / truth).mean())
        if precision + recall == 0:
            continue
        f = 2 * precision * recall / (precision + recall)
        if f > best:
            best, best_t = f, float(t)
    return best, best_t


def micro_aupr(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the precision-recall curve over all (protein, term) pairs pooled (micro-averaged), as
    sklearn's average precision (the step-wise sum, no trapezoidal optimism)."""
    y_true = np.asarray(y_true, dtype=bool)
    if not y_true.any():
        raise ValueError("no positive (protein, term) pair: AUPR is undefined")
    return float(average_precision_score(y_true.ravel(), np.asarray(scores, dtype=np.float64).ravel()))


# ---------------------------------------------------------------------------------------------------
# Ranking: relevance [Q, K] booleans (query q's item at rank j+1 is relevant), as a search returns them
# ---------------------------------------------------------------------------------------------------


def first_relevant_rank(relevance: np.ndarray) -> np.ndarray:
    """[Q] 1-based rank of each query's first relevant item in relevance [Q, K]; inf where none is."""
    relevance = np.asarray(relevance, dtype=bool)
    if relevance.ndim != 2:
        raise ValueError(f"relevance must be [Q, K]; got shape {relevance.shape}")
    found = relevance.any(axis=1)  # [Q]
    return np.where(found, relevance.argmax(axis=1) + 1.0, np.inf)


def mrr(ranks: np.ndarray, cutoff: int | None = None) -> float:
    """Mean reciprocal rank. `ranks` is either [Q] 1-based ranks of each query's first relevant item (inf
    for none) or a relevance matrix [Q, K]; a first hit below `cutoff` (MRR@cutoff) counts as 0."""
    ranks = np.asarray(ranks)
    if ranks.ndim == 2:
        ranks = first_relevant_rank(ranks)
    ranks = ranks.astype(np.float64)
    if ranks.ndim != 1 or not len(ranks):
        raise ValueError(f"mrr needs at least one query's rank; got shape {ranks.shape}")
    if (ranks < 1).any():
        raise ValueError("ranks are 1-based: every rank must be >= 1 (inf for no relevant item)")
    reciprocal = 1.0 / ranks  # [Q]; 1/inf = 0
    if cutoff is not None:
        reciprocal[ranks > cutoff] = 0.0
    return float(reciprocal.mean())


def _relevant_counts(relevance: np.ndarray, n_relevant: np.ndarray | None) -> np.ndarray:
    """[Q] relevant items per query: given, or those in the ranking when not; each must be positive."""
    counts = relevance.sum(axis=1) if n_relevant is None else np.asarray(n_relevant, dtype=np.float64)
    if counts.shape != (len(relevance),):
        raise ValueError(f"n_relevant must be [Q={len(relevance)}]; got shape {counts.shape}")
    if (counts <= 0).any():
        raise ValueError("every query needs at least one relevant item (recall and nDCG are undefined)")
    return counts


def recall_at_k(relevance: np.ndarray, k: int, n_relevant: np.ndarray | None = None) -> float:
    """Mean over queries of (relevant items in the top k) / (relevant items of the query, n_relevant [Q];
    by default those anywhere in the ranking)."""
    relevance = np.asarray(relevance, dtype=bool)
    counts = _relevant_counts(relevance, n_relevant)
    return float((relevance[:, :k].sum(axis=1) / counts).mean())


def ndcg_at_k(relevance: np.ndarray, k: int, n_relevant: np.ndarray | None = None) -> float:
    """Mean nDCG@k with binary gains and log2 discounts: DCG = sum over relevant ranks r <= k of
    1/log2(r + 1), normalised by the ideal DCG of min(n_relevant, k) hits at the top."""
    relevance = np.asarray(relevance, dtype=bool)
    counts = _relevant_counts(relevance, n_relevant)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))  # [k]: rank 1 -> 1
    top = relevance[:, :k]  # [Q, <=k]
    dcg = (top * discounts[: top.shape[1]]).sum(axis=1)  # [Q]
    ideal = np.cumsum(discounts)[np.minimum(counts, k).astype(int) - 1]  # [Q]
    return float((dcg / ideal).mean())


# ---------------------------------------------------------------------------------------------------
# Single-label classification
# ---------------------------------------------------------------------------------------------------


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of exact matches."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or not len(y_true):
        raise ValueError(f"y_true and y_pred must be one non-empty shape; got {y_true.shape}, {y_pred.shape}")
    return float((y_true == y_pred).mean())


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes that occur in y_true or y_pred (sklearn's
    `f1_score(average="macro")`); a class never predicted, or predicted but absent, scores 0."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or not len(y_true):
        raise ValueError(f"y_true and y_pred must be one non-empty shape; got {y_true.shape}, {y_pred.shape}")
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0.0))
