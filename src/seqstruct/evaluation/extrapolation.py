"""Where pretraining stops paying: learning curves fitted with a saturating power law and extrapolated.

Wang, Khabsa and Ma (ACL 2020) found the lead of a fine-tuned pretrained model over an LSTM from scratch
falling to within 1 point once labelled data reached the millions. A grid of (arm, budget, seed) scores
stops far short of that, so the question "from how many labels on does pretraining stop paying?" is
answered here by a fit, with its uncertainty and with where the answer is an extrapolation:

- Each arm's per-seed scores on a split are fitted with score(n) = a − b·n^(−c), a ≤ 1 (a score such as
  accuracy or F1 cannot pass 1), b > 0 and c > 0 (the score grows and saturates), by bounded least squares
  (`fit_power_law`). At least 3 distinct budgets are needed for 3 parameters; with fewer, no fit.
- An arm's advantage over the reference arm is adv(n) = f_arm(n) − f_reference(n). n* is the smallest n on
  a log grid from the smallest budget measured to 10^7 from which adv(n) < 0.01 (1 point) and stays below
  (`crossing`); infinite where the fitted advantage still reaches a point at 10^7 (the fitted asymptotes
  may differ by more than a point: then the curves never meet).
- Uncertainty: whole seeds are resampled with replacement (a seed is one draw of training rows and one
  initialisation; the same seeds for both arms, since a seed gives both the same rows), both arms refitted,
  n* found again, 200 times (seeded). n* is reported as the median of the draws with a 95% percentile
  interval, draws without a crossing counted as infinite rather than dropped. With s seeds there are only
  C(2s − 1, s) distinct resamples (10 for 3 seeds), so the interval is coarse, and a percentile bootstrap
  over few units is too narrow: on curves drawn from known laws (`tests/evaluation/test_extrapolation.py`'s,
  budgets 20 to 50,000, noise 0.003, 40 replicates) the 95% interval held the true n* in 75% of them with
  3 seeds and 90% with 6. With one seed there is nothing to resample: the one fit's n* is given, and no
  interval.
- Where the answer is not supported by the data (`verdict`): n* beyond 10× the largest budget measured, or
  no crossing below 10^7, is an extrapolation, not a measurement. A fit whose curve misses the arm's
  per-budget mean scores by more than 1 point RMS, and by more than twice what seed noise explains (the
  RMS standard error of those means), does not describe the curve (a score that falls as data grows, say),
  and any n* read off it is unsupported too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CEILING = 1.0  # the largest score: accuracy, F1, Fmax and AUPR are fractions
THRESHOLD = 0.01  # "within 1 point": the paper's criterion, in score units
CAP = 1e7  # the largest n searched for a crossing
HORIZON = 10.0  # beyond this multiple of the largest budget measured, n* is unsupported
DRAWS = 200  # bootstrap draws of whole seeds
MIN_BUDGETS = 3  # distinct budgets a 3-parameter fit needs
GRID_POINTS = 600  # log-spaced points between the smallest budget and CAP
CAP_TEXT = f"10^{math.log10(CAP):.0f}"


@dataclass(frozen=True)
class PowerLaw:
    """score(n) = a − b·n^(−c)."""

    a: float
    b: float
    c: float

    def __call__(self, n: np.ndarray | float) -> np.ndarray:
        return self.a - self.b * np.power(np.asarray(n, dtype=np.float64), -self.c)


def fit_power_law(n: np.ndarray, y: np.ndarray, ceiling: float = CEILING) -> PowerLaw | None:
    """The least-squares PowerLaw through the points (n [m] budgets, y [m] scores; repeated budgets are
    seeds), a ≤ ceiling, b > 0, 0 < c ≤ 3; None when no start converges.

    Fitted in x = n / min(n), where b·n^(−c) = β·x^(−c) with β = b·min(n)^c, so that β is of the order of
    the scores whatever the budgets; several starting exponents, the best kept (the problem is not convex).
    """
    from scipy.optimize import curve_fit

    n, y = np.asarray(n, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n0 = float(n.min())
    x = n / n0  # [m] >= 1

    def model(x: np.ndarray, a: float, beta: float, c: float) -> np.ndarray:
        return a - beta * np.power(x, -c)

    lower, upper = [-np.inf, 1e-12, 1e-3], [ceiling, np.inf, 3.0]
    a0 = min(ceiling, float(y.max()) + 0.05)
    first = float(y[x == 1.0].mean())  # the smallest budget's mean: a − β there
    best, best_sse = None, math.inf
    for c0 in (0.1, 0.5, 1.5):
        p0 = [a0, max(a0 - first, 1e-3), c0]
        try:
            (a, beta, c), _ = curve_fit(model, x, y, p0=p0, bounds=(lower, upper), maxfev=5000)
        except (RuntimeError, ValueError):  # no convergence within maxfev, or a non-finite step
            continue
        sse = float(np.sum((model(x, a, beta, c) - y) ** 2))
        if np.isfinite(sse) and sse < best_sse:
            best, best_sse = PowerLaw(float(a), float(beta * n0**c), float(c)), sse
    return best


def budget_means(n: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per distinct budget (sorted): (budgets [k], mean score [k], standard error of the mean [k], 0 where
    one seed)."""
    budgets = np.unique(n)  # [k]
    groups = [y[n == b] for b in budgets]
    means = np.array([g.mean() for g in groups])
    errors = np.array([g.std(ddof=1) / math.sqrt(len(g)) if len(g) > 1 else 0.0 for g in groups])
    return budgets, means, errors


def misfit(law: PowerLaw, n: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(RMS of the per-budget mean scores minus the law, RMS of their standard errors): how far the curve
    misses what was measured, and how far seed noise alone would move those means."""
    budgets, means, errors = budget_means(n, y)
    return float(np.sqrt(np.mean((means - law(budgets)) ** 2))), float(np.sqrt(np.mean(errors**2)))


def is_poor(miss: float, noise: float, threshold: float = THRESHOLD) -> bool:
    """A fit that misses its means by more than the threshold and by more than twice the seed noise."""
    return miss > max(threshold, 2.0 * noise)


def crossing(
    arm: PowerLaw, reference: PowerLaw, start: float, threshold: float = THRESHOLD, cap: float = CAP
) -> float:
    """The smallest n on a log grid over [start, cap] from which arm(n) − reference(n) < threshold at every
    later grid point; `start` where the advantage is below it everywhere; inf where it is not below it at
    `cap`."""
    grid = np.geomspace(start, cap, GRID_POINTS)  # [G]
    ahead = np.flatnonzero(arm(grid) - reference(grid) >= threshold)  # grid points still a point ahead
    if not len(ahead):
        return float(start)
    if ahead[-1] == len(grid) - 1:
        return math.inf
    return float(grid[ahead[-1] + 1])


Points = dict[Any, tuple[np.ndarray, np.ndarray]]  # {seed: (budgets [k], scores [k])}


def seed_points(rows: Sequence[dict[str, Any]], metric: str, arm: str, split: str) -> Points:
    """{seed: (budgets [k], scores [k])} of one arm and split: the unit the bootstrap resamples."""
    found: dict[Any, list[tuple[float, float]]] = {}
    for row in rows:
        if row["metric"] == metric and row["arm"] == arm and row["split"] == split:
            found.setdefault(row["seed"], []).append((float(row["examples"]), float(row["value"])))
    return {
        seed: (np.array([p[0] for p in pts]), np.array([p[1] for p in pts])) for seed, pts in found.items()
    }


def pooled(points: Points, seeds: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(budgets [m], scores [m]) of the given seeds, a seed drawn twice counted twice."""
    return np.concatenate([points[s][0] for s in seeds]), np.concatenate([points[s][1] for s in seeds])


def bootstrap_crossings(
    arm: Points,
    reference: Points,
    seeds: Sequence[Any],
    start: float,
    draws: int = DRAWS,
    random_state: int = 0,
) -> np.ndarray:
    """[draws] n* of each bootstrap draw of whole seeds (inf: no crossing by CAP, or a fit that failed).
    Fits are cached by the multiset of seeds drawn: few seeds give few distinct resamples."""
    rng = np.random.default_rng(random_state)
    cache: dict[tuple[int, ...], float] = {}
    found = np.empty(draws)
    for i in range(draws):
        key = tuple(sorted(rng.integers(0, len(seeds), len(seeds)).tolist()))
        if key not in cache:
            chosen = [seeds[k] for k in key]
            law, base = fit_power_law(*pooled(arm, chosen)), fit_power_law(*pooled(reference, chosen))
            cache[key] = math.inf if law is None or base is None else crossing(law, base, start)
        found[i] = cache[key]
    return found


def fit_record(arm: str, split: str, points: Points) -> dict[str, Any]:
    """One arm's fit on one split over all its seeds, as curve.json keeps it: parameters (None where there
    is no fit, `reason` saying why), budgets measured, misfit, seed noise and whether the fit is poor."""
    n, y = pooled(points, list(points))
    record: dict[str, Any] = {"arm": arm, "split": split, "n_min": float(n.min()), "n_max": float(n.max())}
    record |= {"seeds": len(points), "a": None, "b": None, "c": None}
    if len(np.unique(n)) < MIN_BUDGETS:
        return record | {"reason": f"fewer than {MIN_BUDGETS} budgets measured: no curve is fitted"}
    if y.min() < 0.0 or y.max() > CEILING:
        return record | {"reason": "scores outside [0, 1]: the law is for a score ≤ 1 that grows with data"}
    law = fit_power_law(n, y)
    if law is None:
        return record | {"reason": "the least-squares fit did not converge"}
    miss, noise = misfit(law, n, y)
    return (
        record
        | {"a": law.a, "b": law.b, "c": law.c, "misfit": miss, "noise": noise}
        | {"poor": is_poor(miss, noise)}
    )


def law_of(record: dict[str, Any]) -> PowerLaw | None:
    """The PowerLaw of a `fit_record`, None where it has none."""
    return None if record["a"] is None else PowerLaw(record["a"], record["b"], record["c"])


def verdict(n_star: float, n_min: float, n_max: float, poor: Sequence[str]) -> tuple[bool, str]:
    """(supported, plain words) for an n* read off fits of budgets n_min..n_max; `poor` names the arms whose
    fit misses their measured means (module docstring)."""
    if poor:
        return False, (
            f"unsupported: the law misses the measured means of {' and '.join(poor)} by more than a point "
            "and than seed noise explains, so it does not describe the curve"
        )
    if math.isinf(n_star):
        return False, f"no crossing below {CAP_TEXT}: the fitted curves stay more than a point apart"
    if n_star <= n_min:
        return True, "never a point ahead over the fitted range: below 1 point from the smallest budget"
    if n_star <= n_max:
        return True, "within the budgets measured: an interpolation"
    if n_star <= HORIZON * n_max:
        return True, f"beyond the largest budget measured, within {HORIZON:g}×: a short extrapolation"
    return False, f"beyond {HORIZON:g}× the largest budget measured: an extrapolation, not a measurement"


def finite(value: float) -> float | None:
    """inf as None, for JSON."""
    return None if math.isinf(value) else float(value)


def pair_record(
    arm: dict[str, Any],
    reference: dict[str, Any],
    arm_points: Points,
    reference_points: Points,
    draws: int = DRAWS,
) -> dict[str, Any]:
    """n* of one arm against the reference on one split: the all-seeds fit's n*, the bootstrap median and
    95% interval (None for one seed), the share of draws without a crossing, and the verdict."""
    record: dict[str, Any] = {"split": arm["split"], "arm": arm["arm"], "against": reference["arm"]}
    laws = law_of(arm), law_of(reference)
    if laws[0] is None or laws[1] is None:
        reason = arm.get("reason") if laws[0] is None else reference.get("reason")
        return record | {"fitted": False, "n_star": None, "supported": False, "reason": f"no n*: {reason}"}
    start, n_max = min(arm["n_min"], reference["n_min"]), max(arm["n_max"], reference["n_max"])
    point = crossing(laws[0], laws[1], start)
    seeds = [s for s in arm_points if s in reference_points]  # paired: a seed gives both arms its rows
    record |= {"fitted": True, "n_star": finite(point), "seeds": len(seeds), "draws": 0}
    record |= {"median": None, "low": None, "high": None, "no_crossing": None}
    middle = point
    if len(seeds) > 1:
        found = bootstrap_crossings(arm_points, reference_points, seeds, start, draws)
        low, middle, high = np.quantile(found, [0.025, 0.5, 0.975], method="inverted_cdf")  # inf-safe
        record |= {"draws": draws, "median": finite(middle), "low": finite(low), "high": finite(high)}
        record["no_crossing"] = float(np.isinf(found).mean())
    poor = [r["arm"] for r in (arm, reference) if r["poor"]]
    supported, reason = verdict(float(middle), start, n_max, poor)
    return record | {"n_min": start, "n_max": n_max, "supported": supported, "reason": reason}


def extrapolate(
    rows: Sequence[dict[str, Any]], metric: str, reference: str, draws: int = DRAWS
) -> dict[str, list[dict[str, Any]]]:
    """{"fits": a `fit_record` per (arm, split), "crossings": a `pair_record` per split and arm other than
    `reference`}, from curve.csv-style rows (arm, seed, examples, split, metric, value). The advantage is
    each arm's lead over the reference, as in curve.md's gap columns: in the packaged configs the reference
    is the LSTM from scratch, so n* is where a pretrained arm stops leading it by a point (and, for
    `lstm-init`, where pretrained token embeddings alone stop paying)."""
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    splits = list(dict.fromkeys(r["split"] for r in rows if r["metric"] == metric))
    fits, crossings = [], []
    for split in splits:
        points = {arm: seed_points(rows, metric, arm, split) for arm in arms}
        records = {arm: fit_record(arm, split, found) for arm, found in points.items() if found}
        fits += records.values()
        if reference not in records:
            continue
        for arm in records:
            if arm != reference:
                crossings.append(
                    pair_record(records[arm], records[reference], points[arm], points[reference], draws)
                )
    return {"fits": fits, "crossings": crossings}


def _count(value: float | None) -> str:
    return f"> {CAP_TEXT}" if value is None else f"{value:,.0f}"


def _interval(record: dict[str, Any]) -> str:
    if not record["draws"]:
        return "none: one seed, nothing to resample"
    if record["low"] is None:
        return f"beyond {CAP_TEXT}"
    return f"{_count(record['low'])} – {_count(record['high'])}"


def extrapolation_note(result: dict[str, list[dict[str, Any]]], metric: str, reference: str) -> str:
    """curve.md's "Where pretraining stops paying" block: n* per split and arm with its interval and where
    it is unsupported, then each arm's fitted law."""
    if not result["fits"]:
        return ""
    heading = ["## Where pretraining stops paying", ""]
    if all(f["a"] is None for f in result["fits"]):  # one reason for every arm, typically too few budgets
        reasons = "; ".join(dict.fromkeys(f["reason"] for f in result["fits"]))
        return "\n".join([*heading, f"No n*: {reasons}.", ""])
    draws = max((r.get("draws", 0) for r in result["crossings"]), default=0)
    spread = (
        f"Median and 95% interval over {draws} bootstrap draws of whole seeds (both arms resampled alike; a "
        "draw without a crossing counts as beyond the search): seed-to-seed variation only, coarse and too "
        "narrow with few seeds (it held the true n* of simulated 3-seed curves 3 times in 4), and the law's "
        "form beyond the data is taken on trust."
        if draws
        else "One seed: no interval (there is nothing to resample), only the one fit's n*."
    )
    lines = [
        *heading,
        f"Each arm's per-seed {metric} fitted with a − b·n^(−c) (a ≤ 1, b, c > 0) over the labelled examples "
        f"n; n* is the smallest n (searched up to {CAP_TEXT}) from which the arm's fitted lead over "
        f"{reference} stays below 1 point ({THRESHOLD:g}). {spread} An n* beyond {HORIZON:g}× the largest "
        "budget measured is an extrapolation, not a measurement; a fit that misses an arm's per-budget means "
        "by more than a point RMS and by more than twice their seed noise is marked poor, and no n* read off "
        "it is supported.",
        "",
        f"| split | arm − {reference} | n* | 95% interval | draws without a crossing | where |",
        "|---|---|---:|---|---:|---|",
    ]
    for r in result["crossings"]:
        if not r["fitted"]:
            lines.append(f"| {r['split']} | {r['arm']} | — | — | — | {r['reason']} |")
            continue
        n_star = r["median"] if r["draws"] else r["n_star"]
        shown = f"≤ {n_star:,.0f}" if n_star is not None and n_star <= r["n_min"] else _count(n_star)
        share = f"{r['no_crossing']:.0%}" if r["no_crossing"] is not None else "—"
        reason = r["reason"] if r["supported"] else f"**{r['reason']}**"
        lines.append(f"| {r['split']} | {r['arm']} | {shown} | {_interval(r)} | {share} | {reason} |")
    lines += [
        "",
        "| split | arm | a | b | c | misfit (RMS) | seed noise (RMS s.e.) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for f in result["fits"]:
        if f["a"] is None:
            lines.append(f"| {f['split']} | {f['arm']} | — | — | — | {f['reason']} | |")
            continue
        flag = " (poor)" if f["poor"] else ""
        lines.append(
            f"| {f['split']} | {f['arm']} | {f['a']:.3f} | {f['b']:.3g} | {f['c']:.3f} | {f['misfit']:.3f}{flag} "
            f"| {f['noise']:.3f} |"
        )
    return "\n".join(lines) + "\n"
