"""Multi-label function-prediction metrics as CAFA defines them (Radivojac et al. 2013; Zhou et al. 2019).

Inputs are dense: y_true [N, T] booleans (protein i annotated with term j) and scores [N, T] in [0, 1].
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score

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
