"""The probe: logistic regression on frozen features, its inverse regularisation C chosen on valid.

Multinomial (sklearn, lbfgs) for one label; one-vs-rest for many, as one torch linear layer fitted
full-batch by L-BFGS to the summed per-term log-loss plus ||W||^2 / (2 C N). That objective separates by
term, so it is exactly a logistic regression per term, done at once for thousands of terms. Both start
from zero (a convex problem with a unique optimum), so the probe is deterministic.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from seqstruct.evaluation.metrics import accuracy, fmax

logger = logging.getLogger(__name__)

Features = np.ndarray | sp.spmatrix


def _standardise(train: Features, *others: Features) -> list[Features]:
    """Dense features scaled by the train mean and standard deviation (constant columns left at 0);
    sparse ones (TF-IDF, already L2-normalised) as they are, so that they stay sparse."""
    if sp.issparse(train):
        return [train, *others]
    mean = train.mean(axis=0)  # [D]
    std = train.std(axis=0)  # [D]
    std = np.where(std > 0, std, 1.0)
    return [((x - mean) / std).astype(np.float32) for x in (train, *others)]


def single_label_probe(
    train: tuple[Features, np.ndarray],
    valid: tuple[Features, np.ndarray],
    tests: dict[str, Features],
    n_classes: int,
    grid: Sequence[float],
    max_iter: int = 500,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Multinomial logistic regression, C chosen by valid accuracy (the smallest C on ties).

    train/valid: (features [n, D], class indices [n]); tests: split -> features. Returns ({split:
    probabilities [n, n_classes]}, {"C": chosen, "valid_accuracy": its score, "grid": ...}).
    """
    from sklearn.linear_model import LogisticRegression

    names = list(tests)
    x_train, x_valid, *x_tests = _standardise(train[0], valid[0], *(tests[s] for s in names))
    best, best_score, scores = None, -1.0, {}
    for c in sorted(grid):
        model = LogisticRegression(C=c, max_iter=max_iter).fit(x_train, train[1])
        score = accuracy(valid[1], model.predict(x_valid))
        scores[c] = score
        logger.info("probe C=%g: valid accuracy %.4f", c, score)
        if score > best_score:
            best, best_score = model, score
    out = {}
    for split, x in zip(names, x_tests, strict=True):
        probabilities = np.zeros((x.shape[0], n_classes))  # [n, C]: classes absent from train stay 0
        probabilities[:, best.classes_] = best.predict_proba(x)
        out[split] = probabilities
    return out, {"C": float(best.C), "valid_accuracy": best_score, "valid_by_C": scores}


def _fit_one_vs_rest(
    x: torch.Tensor, y: torch.Tensor, c: float, start: tuple[torch.Tensor, torch.Tensor], max_iter: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """x [N, D], y [N, T] in {0, 1}: minimise sum_t mean_n logloss + ||W||^2 / (2 C N) from `start`."""
    n = len(x)
    weight = start[0].clone().requires_grad_(True)  # [D, T]
    bias = start[1].clone().requires_grad_(True)  # [T]
    optimiser = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, history_size=10, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        logits = x @ weight + bias  # [N, T]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum") / n
        loss = loss + (weight * weight).sum() / (2.0 * c * n)
        loss.backward()
        return loss

    optimiser.step(closure)
    return weight.detach(), bias.detach()


def multi_label_probe(
    train: tuple[Features, np.ndarray],
    valid: tuple[Features, np.ndarray],
    tests: dict[str, Features],
    grid: Sequence[float],
    max_iter: int = 500,
    device: str | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One-vs-rest logistic regression over all terms at once (module docstring), C chosen by valid Fmax.

    train/valid: (features [n, D], targets [n, T] booleans). The fits go from the strongest
    regularisation (smallest C) up, each starting where the previous stopped. Returns ({split:
    probabilities [n, T]}, {"C", "valid_fmax", "valid_by_C"}).
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    names = list(tests)
    dense = [x.toarray() if sp.issparse(x) else x for x in (train[0], valid[0], *(tests[s] for s in names))]
    x_train, x_valid, *x_tests = (torch.as_tensor(x, device=device) for x in _standardise(*dense))
    y = torch.as_tensor(train[1], dtype=torch.float32, device=device)  # [N, T]
    prevalence = y.mean(dim=0).clamp(1e-4, 1 - 1e-4)  # [T]
    state = (torch.zeros(x_train.shape[1], y.shape[1], device=device), torch.logit(prevalence))
    best, best_score, scores = None, -1.0, {}
    for c in sorted(grid):
        state = _fit_one_vs_rest(x_train, y, c, state, max_iter)
        with torch.no_grad():
            predicted = torch.sigmoid(x_valid @ state[0] + state[1]).cpu().numpy()
        score = fmax(valid[1], predicted)[0]
        scores[c] = score
        logger.info("probe C=%g: valid Fmax %.4f", c, score)
        if score > best_score:
            best, best_score = (c, state), score
    c, (weight, bias) = best
    with torch.no_grad():
        out = {s: torch.sigmoid(x @ weight + bias).cpu().numpy() for s, x in zip(names, x_tests, strict=True)}
    return out, {"C": c, "valid_fmax": best_score, "valid_by_C": scores}
