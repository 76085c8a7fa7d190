"""The probe: logistic regression on standardised frozen features, its inverse regularisation C chosen on
valid.

One label: multinomial (sklearn's newton-cg), the grid warm-started from the previous C: on the demo's
go-mf-class (1,500 mean-pooled embeddings, 173 classes) lbfgs took 242-485 iterations and 61 s for four C
values, newton-cg 7-13 Newton steps and about 8 s, to the same valid accuracies (docs/benchmarks.md). Many labels: a
logistic regression per term, sum_n logloss / N + ||w||^2 / (2 C N) with an unpenalised bias (sklearn's
objective), solved for every term at once by a batched truncated Newton method (Newton-CG, as sklearn's
newton-cg and LIBLINEAR's TRON). Why not one L-BFGS over all terms: the objective separates by term, and
a joint L-BFGS shares one step length and one curvature history among thousands of terms, so the worst
conditioned (rare, nearly separable terms at large C) set the pace of all; on the demo's go-mf it took
100-400 evaluations per C. Here each term takes its own conjugate-gradient solve and its own backtracking
step, and leaves the batch once its gradient is below `tol`:

- features are rotated onto the eigenvectors of X^T X / N once (a rotation leaves ||w||^2, hence the
  model, unchanged), where a term's Hessian at constant curvature s is diagonal, s * eigenvalue + 1/(C N):
  the conjugate gradient's preconditioner, exact up to how much the curvature varies over rows;
- a trial step costs no product with the features (logits + alpha * X step), and the labels enter only
  through X^T Y, computed once;
- C grows along the grid, each fit starting from the previous solution (a warm start);
- a term with no positive (or no negative) train row has its optimum at an infinite bias: it is not
  fitted and scores its train frequency (0 or 1), as one-vs-rest's constant predictor.

It stops where sklearn's lbfgs does: the largest absolute gradient entry of each term (in the original
feature basis) at most `tol` (1e-4). A fit that does not get there in `max_iter` Newton steps is reported
once per probe, as one ConvergenceWarning naming how many terms, at which C and how far.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

from seqstruct.evaluation.metrics import accuracy, fmax

logger = logging.getLogger(__name__)

Features = np.ndarray | sp.spmatrix

TOL = 1e-4  # largest |gradient entry| of a converged fit: sklearn LogisticRegression's default tol
_ARMIJO = 1e-4  # sufficient decrease of a backtracking step
_HALVINGS = 30  # most step halvings (a Newton direction of a convex loss needs a handful at worst)


def _standardise(train: Features, *others: Features) -> list[Features]:
    """Dense features scaled by the train mean and standard deviation (constant columns left at 0);
    sparse ones (TF-IDF, already L2-normalised) as they are, so that they stay sparse."""
    if sp.issparse(train):
        return [train, *others]
    mean = train.mean(axis=0)  # [D]
    std = train.std(axis=0)  # [D]
    std = np.where(std > 0, std, 1.0)
    return [((x - mean) / std).astype(np.float32) for x in (train, *others)]


def _warn_unconverged(failures: list[str]) -> None:
    if failures:
        warnings.warn(
            "probe did not converge (largest |gradient| above tol): "
            + "; ".join(failures)
            + ". Raise probe_iter, or drop the largest C values from grid",
            ConvergenceWarning,
            stacklevel=3,
        )


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
    probabilities [n, n_classes]}, {"C": chosen, "valid_accuracy": its score, "valid_by_C": ...}).
    The grid goes up from the smallest C, each fit starting from the previous one (warm_start).
    """
    from copy import deepcopy

    from sklearn.linear_model import LogisticRegression

    names = list(tests)
    # float64, so that sklearn fits and predicts in float64 (probabilities that sum to 1 within 1e-12).
    x_train, x_valid, *x_tests = (
        x if sp.issparse(x) else x.astype(np.float64)
        for x in _standardise(train[0], valid[0], *(tests[s] for s in names))
    )
    model = LogisticRegression(solver="newton-cg", max_iter=max_iter, tol=TOL, warm_start=True)
    best, best_score, scores, failures = None, -1.0, {}, []
    for c in sorted(grid):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.set_params(C=c).fit(x_train, train[1])
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            failures.append(f"C={c:g}: newton-cg stopped at max_iter={max_iter}")
        score = accuracy(valid[1], model.predict(x_valid))
        scores[c] = score
        logger.info("probe C=%g: valid accuracy %.4f (%d iterations)", c, score, int(model.n_iter_.max()))
        if score > best_score:
            best, best_score = deepcopy(model), score
    _warn_unconverged(failures)
    out = {}
    for split, x in zip(names, x_tests, strict=True):
        probabilities = np.zeros((x.shape[0], n_classes))  # [n, C]: classes absent from train stay 0
        probabilities[:, best.classes_] = best.predict_proba(x)
        out[split] = probabilities
    return out, {"C": float(best.C), "valid_accuracy": best_score, "valid_by_C": scores}


def _loss(
    logits: torch.Tensor, theta: torch.Tensor, zty: torch.Tensor, penalty: torch.Tensor
) -> torch.Tensor:
    """[T] per-term objective: mean log-loss + penalised ||w||^2 / 2, with sum_n y*logit = theta . Z^T y."""
    n = logits.shape[0]
    data = torch.nn.functional.softplus(logits).sum(dim=0) / n - (theta * zty).sum(dim=0)  # [T]
    return data + 0.5 * (penalty[:, None] * theta * theta).sum(dim=0)


def _conjugate_gradient(
    z: torch.Tensor,
    curvature: torch.Tensor,
    penalty: torch.Tensor,
    rhs: torch.Tensor,
    precondition: torch.Tensor,
    forcing: torch.Tensor,
    max_iter: int,
) -> tuple[torch.Tensor, int]:
    """Solve H_t s_t = rhs_t for every term t at once, H_t = Z^T diag(curvature_t) Z / N + diag(penalty),
    by preconditioned conjugate gradients, each term leaving the batch once ||residual_t|| <= forcing_t
    (so that a few slow terms do not make the others pay for their iterations).

    z [N, K], curvature [N, T], rhs and precondition [K, T], forcing [T]. Returns (s [K, T], Hessian
    products taken, counted per batch)."""
    n = z.shape[0]
    tiny = torch.finfo(z.dtype).tiny
    out = torch.zeros_like(rhs)
    running = torch.arange(rhs.shape[1], device=rhs.device)  # columns still iterating
    step, residual = torch.zeros_like(rhs), rhs.clone()
    preconditioned = residual / precondition
    direction = preconditioned.clone()
    rz = (residual * preconditioned).sum(dim=0)  # [T_running]
    products = 0
    while products < max_iter:
        finished = residual.norm(dim=0) <= forcing
        if finished.any():  # write finished columns out and drop them from the batch
            out[:, running[finished]] = step[:, finished]
            keep = ~finished
            running, step, residual, direction, rz = (
                running[keep],
                step[:, keep],
                residual[:, keep],
                direction[:, keep],
                rz[keep],
            )
            curvature, precondition, forcing = curvature[:, keep], precondition[:, keep], forcing[keep]
        if not len(running):
            return out, products
        product = z.T @ (curvature * (z @ direction)) / n + penalty[:, None] * direction  # [K, T_running]
        products += 1
        alpha = rz / (direction * product).sum(dim=0).clamp_min(tiny)  # [T_running]
        step += alpha * direction
        residual -= alpha * product
        preconditioned = residual / precondition
        rz_next = (residual * preconditioned).sum(dim=0)
        direction = preconditioned + (rz_next / rz.clamp_min(tiny)) * direction
        rz = rz_next
    out[:, running] = step
    return out, products


def _newton(
    z: torch.Tensor,
    zty: torch.Tensor,
    eigenvalues: torch.Tensor,
    rotation: torch.Tensor,
    theta: torch.Tensor,
    c: float,
    max_iter: int,
    tol: float,
) -> tuple[torch.Tensor, dict[str, int], float, int]:
    """Fit every column of theta [K, T] (K = D rotated weights + the bias) from where it is, for one C.

    z [N, K]: rotated standardised features and a column of ones; zty [K, T] = Z^T Y / N; eigenvalues
    [K] of Z^T Z / N (1 for the bias); rotation [D, D] back to the original basis, where the gradient
    is checked. Returns (theta, {"newton": steps, "cg": Hessian products}, largest final |gradient|,
    terms still above tol)."""
    n, k = z.shape
    penalty = torch.full((k,), 1.0 / (c * n), dtype=z.dtype, device=z.device)
    penalty[-1] = 0.0  # the bias is not penalised
    theta = theta.clone()
    active = torch.arange(theta.shape[1], device=z.device)  # terms still being fitted
    th, zt = theta, zty  # the active columns
    logits = z @ th  # [N, T_active]
    steps, products, worst = 0, 0, 0.0
    for steps in range(max_iter + 1):
        p = torch.sigmoid(logits)
        grad = z.T @ p / n - zt + penalty[:, None] * th  # [K, T_active]
        # Convergence as sklearn tests it: on the gradient in the original (unrotated) feature basis.
        size = torch.cat([rotation @ grad[:-1], grad[-1:]]).abs().amax(dim=0)  # [T_active]
        done = size <= tol
        if done.any():  # write finished terms back and drop them from the batch
            theta[:, active[done]] = th[:, done]
            keep = ~done
            active, th, zt, logits, p, grad = (
                active[keep],
                th[:, keep],
                zt[:, keep],
                logits[:, keep],
                p[:, keep],
                grad[:, keep],
            )
            size = size[keep]
        if not len(active):
            return theta, {"newton": steps, "cg": products}, 0.0, 0
        worst = float(size.max())
        if steps == max_iter:
            break
        curvature = p * (1.0 - p)  # [N, T_active]
        precondition = eigenvalues[:, None] * curvature.mean(dim=0) + penalty[:, None]  # [K, T_active]
        precondition = precondition.clamp_min(1e-12)  # the bias row of a term whose sigmoid saturated
        norm = grad.norm(dim=0)
        forcing = norm * norm.sqrt().clamp_max(0.5)  # superlinear: solve more exactly near the optimum
        step, taken = _conjugate_gradient(z, curvature, penalty, -grad, precondition, forcing, k)
        products += taken
        along = z @ step  # [N, T_active]: logits move by alpha * along
        before = _loss(logits, th, zt, penalty)
        slope = (grad * step).sum(dim=0)  # [T_active], negative for a descent direction
        alpha = torch.ones_like(slope)
        for _ in range(_HALVINGS):
            after = _loss(logits + alpha * along, th + alpha * step, zt, penalty)
            accepted = after <= before + _ARMIJO * alpha * slope
            if accepted.all():
                break
            alpha = torch.where(accepted, alpha, alpha / 2)
        th = th + alpha * step
        logits = logits + alpha * along
    theta[:, active] = th
    return theta, {"newton": steps, "cg": products}, worst, len(active)


def multi_label_probe(
    train: tuple[Features, np.ndarray],
    valid: tuple[Features, np.ndarray],
    tests: dict[str, Features],
    grid: Sequence[float],
    max_iter: int = 500,
    device: str | None = None,
    tol: float = TOL,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One logistic regression per term, all at once (module docstring), C chosen by valid Fmax (the
    smallest C on ties).

    train/valid: (features [n, D], targets [n, T] booleans); max_iter: most Newton steps per C.
    Returns ({split: probabilities [n, T]}, {"C", "valid_fmax", "valid_by_C", "newton_steps"}).
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    names = list(tests)
    dense = [x.toarray() if sp.issparse(x) else x for x in (train[0], valid[0], *(tests[s] for s in names))]
    x_train, x_valid, *x_tests = (
        torch.as_tensor(np.asarray(x, dtype=np.float32), device=device) for x in _standardise(*dense)
    )
    targets = np.asarray(train[1], dtype=bool)  # [N, T]
    n, t = targets.shape
    positives = targets.sum(axis=0)  # [T]
    fitted = torch.as_tensor((positives > 0) & (positives < n), device=device)  # [T]
    frequency = torch.as_tensor(positives / n, dtype=torch.float32, device=device)  # [T]

    # The eigenbasis of X^T X / N, in float64 (numpy's LAPACK: torch's CPU eigh took seconds for D = 400).
    gram = x_train.T.double().cpu().numpy() @ x_train.double().cpu().numpy() / n  # [D, D]
    with threadpool_limits(1, user_api="blas"):  # threaded LAPACK beside torch's threads: 0.03 s became 5 s
        found = np.linalg.eigh(gram)
    eigenvalues, rotation = (torch.as_tensor(a, dtype=torch.float32, device=device) for a in found)
    ones = torch.ones(n, 1, device=device)
    z = torch.cat([x_train @ rotation, ones], dim=1)  # [N, K = D + 1]
    eigenvalues = torch.cat([eigenvalues.clamp_min(0), ones[0]])  # [K]
    y = torch.as_tensor(targets[:, fitted.cpu().numpy()], dtype=torch.float32, device=device)
    zty = z.T @ y / n  # [K, T_fitted]
    theta = torch.zeros(z.shape[1], y.shape[1], device=device)  # [K, T_fitted]
    theta[-1] = torch.logit(y.mean(dim=0))  # start at the prevalence

    def predict(x: torch.Tensor, theta: torch.Tensor) -> np.ndarray:
        out = frequency.expand(len(x), t).clone()  # [n, T]: unfitted terms score their train frequency
        out[:, fitted] = torch.sigmoid(x @ (rotation @ theta[:-1]) + theta[-1])
        return out.cpu().numpy()

    best, best_score, scores, steps, failures = None, -1.0, {}, {}, []
    for c in sorted(grid):
        theta, steps[c], worst, left = _newton(z, zty, eigenvalues, rotation, theta, c, max_iter, tol)
        if left:
            failures.append(
                f"C={c:g}: {left} of {y.shape[1]} terms after {max_iter} Newton steps, max {worst:.2g}"
            )
        with torch.no_grad():
            score = fmax(valid[1], predict(x_valid, theta))[0]
        scores[c] = score
        logger.info("probe C=%g: valid Fmax %.4f (%s)", c, score, steps[c])
        if score > best_score:
            best, best_score = (c, theta), score
    _warn_unconverged(failures)
    c, theta = best
    out = {s: predict(x, theta) for s, x in zip(names, x_tests, strict=True)}
    return out, {"C": c, "valid_fmax": best_score, "valid_by_C": scores, "newton_steps": steps}
