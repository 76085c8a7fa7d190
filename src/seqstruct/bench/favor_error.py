"""FAVOR+ approximation error: the Performer paper's study (Choromanski et al. 2021, fig. 3).

For m random features and several independent draws, the mean squared error of the random-feature output
against exact softmax attention, for positive and trigonometric features with iid and orthogonal
projections. Every method sees the same q, k, v in a draw; the projection of a draw is seeded by
(seed, draw) alone, so the matrices for different m are nested (common random numbers: the curves
differ by m, not by luck). The exact reference is computed in float64; positive features go through
`favor_attention` (float32, stabilised: the production path), trigonometric features through
`kernel_attention` in float64 (there is no stabilised form: their normaliser can be ~0 or negative).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from seqstruct.attention.favor import favor_attention, gaussian_projection
from seqstruct.attention.reference import FeatureKind, kernel_attention, softmax_attention
from seqstruct.bench.common import fmt, pyplot, write_csv, write_json
from seqstruct.io import atomic_open, atomic_path


@dataclass
class FavorErrorConfig:
    """`seqstruct bench favor-error`: what the study draws and measures."""

    length: int = 4096  # sequence length L of every draw
    dim: int = 16  # head dimension d
    features: Sequence[int] = (16, 32, 64, 128, 256)  # the values of m (random features)
    draws: int = 10  # independent inputs and projections per m
    seed: int = 0  # seeds the inputs and projections of every draw
    input_std: float = 1.0  # standard deviation of q and k entries: decides the estimators' regime

    def __post_init__(self) -> None:
        if self.length < 1 or self.dim < 1 or self.draws < 1 or not self.features or min(self.features) < 2:
            raise ValueError("length, dim and draws must be positive and every m at least 2")


# method name -> (feature kind, orthogonal projection)
ERROR_METHODS: dict[str, tuple[FeatureKind, bool]] = {
    "positive+iid": ("positive", False),
    "positive+orthogonal": ("positive", True),
    "trigonometric+iid": ("trigonometric", False),
    "trigonometric+orthogonal": ("trigonometric", True),
}


@dataclass
class ErrorRow:
    method: str
    m: int
    mse_mean: float  # over the draws whose MSE is finite
    mse_std: float  # sample standard deviation over the same draws (0 with one)
    mse_median: float  # over all draws: robust to the trigonometric features' heavy tail
    mse_min: float  # smallest and largest finite draw: the plot's band (mean ± std runs below 0 on a
    mse_max: float  # log axis whenever the spread exceeds the mean, as it does for heavy tails)
    draws: int
    nonfinite_draws: int  # draws whose output held inf or NaN: counted here, left out of mean and std


def _generator(seed: int, draw: int, stream: int) -> torch.Generator:
    """An independent generator per (seed, draw, stream): inputs and projections never share draws."""
    state = np.random.SeedSequence([seed, draw, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def error_inputs(
    length: int, dim: int, generator: torch.Generator, std: float = 1.0
) -> tuple[Tensor, Tensor, Tensor]:
    """Gaussian q, k, v [1, 1, L, d] in float64 (q, k entries with standard deviation `std`, v's 1), q
    and k multiplied by d^(-1/4) (the paper's data normaliser) so that softmax(q kᵀ) is the target:
    BERT's softmax(q kᵀ/√d) of the raw draws."""
    q, k, v = torch.randn(3, 1, 1, length, dim, generator=generator, dtype=torch.float64)
    return q * (std * dim**-0.25), k * (std * dim**-0.25), v


def approximation_mse(
    q: Tensor, k: Tensor, v: Tensor, exact: Tensor, projection: Tensor, kind: FeatureKind
) -> float:
    """Mean over the L·d output entries of (approximation − exact)²; inf or NaN when the approximation
    is. q, k, v, exact [1, 1, L, d] float64; projection [m, d] float64."""
    if kind == "positive":
        # q, k come scaled already, so the softmax temperature is 1.
        approx = favor_attention(q.float(), k.float(), v.float(), projection.float(), scaling=1.0)
    else:
        approx = kernel_attention(q, k, v, projection, kind=kind)
    return (approx.double() - exact).pow(2).mean().item()


def favor_error_study(config: FavorErrorConfig) -> dict[str, Any]:
    """MSE of the four ERROR_METHODS for each m in `features` over `draws` draws. Returns {"rows":
    [ErrorRow], "orthogonal_beats_iid": {kind: bool}, "exact_mean_square": float}: whether the
    orthogonal projection's mean MSE is below the iid one's at every m (False where either is not
    finite), and the mean square of the exact output, which is the MSE of answering zeros: the yardstick.

    The estimators' variance grows like exp(|q + k|²) (q, k after the normaliser), so `input_std`
    decides the regime: at 1 with d=16, |q + k|² ≈ 2·√d = 8 and even m=256 features leave the output
    MSE above that yardstick; at 0.5 the error falls like 1/m."""
    length, dim, features, draws, seed = config.length, config.dim, config.features, config.draws, config.seed
    errors = {(method, m): [] for method in ERROR_METHODS for m in features}
    exact_mean_square = 0.0
    for draw in range(draws):
        q, k, v = error_inputs(length, dim, _generator(seed, draw, 0), config.input_std)
        exact = softmax_attention(q, k, v)  # [1, 1, L, d], float64
        exact_mean_square += exact.pow(2).mean().item() / draws
        for m in features:
            for method, (kind, orthogonal) in ERROR_METHODS.items():
                projection = gaussian_projection(
                    m, dim, orthogonal=orthogonal, generator=_generator(seed, draw, 1), dtype=torch.float64
                )
                errors[method, m].append(approximation_mse(q, k, v, exact, projection, kind))
    rows = []
    for (method, m), values in errors.items():
        finite = [x for x in values if math.isfinite(x)]
        rows.append(
            ErrorRow(
                method=method,
                m=m,
                mse_mean=statistics.fmean(finite) if finite else math.nan,
                mse_std=statistics.stdev(finite) if len(finite) > 1 else 0.0,
                mse_median=statistics.median(values) if not any(math.isnan(x) for x in values) else math.nan,
                mse_min=min(finite, default=math.nan),
                mse_max=max(finite, default=math.nan),
                draws=len(values),
                nonfinite_draws=len(values) - len(finite),
            )
        )
    return {
        "rows": rows,
        "orthogonal_beats_iid": _orthogonal_beats_iid(rows, features),
        "exact_mean_square": exact_mean_square,
    }


def _orthogonal_beats_iid(rows: list[ErrorRow], features: Sequence[int]) -> dict[str, bool]:
    by_key = {(r.method, r.m): r for r in rows}

    def beats(kind: str, m: int) -> bool:
        ortho, iid = by_key[f"{kind}+orthogonal", m], by_key[f"{kind}+iid", m]
        clean = ortho.nonfinite_draws == 0 and iid.nonfinite_draws == 0
        return clean and ortho.mse_mean < iid.mse_mean

    return {kind: all(beats(kind, m) for m in features) for kind in ("positive", "trigonometric")}


def favor_error_markdown(result: dict[str, Any], config: dict[str, Any]) -> str:
    """A table with one row per m and one column per method: mean ± std of the MSE over the draws."""
    rows: list[ErrorRow] = result["rows"]
    features = sorted({r.m for r in rows})
    by_key = {(r.method, r.m): r for r in rows}

    def cell(r: ErrorRow) -> str:
        text = f"{fmt(r.mse_mean)} ± {fmt(r.mse_std, 2)}"
        return text + (f" ({r.nonfinite_draws}/{r.draws} non-finite)" if r.nonfinite_draws else "")

    beats = result["orthogonal_beats_iid"]
    lines = [
        f"# FAVOR+ approximation error (L={config['length']}, d={config['dim']}, q/k entry std {config['input_std']}, "
        f"{config['draws']} draws, seed {config['seed']})",
        "",
        "Output MSE against exact softmax attention (float64), mean ± std over draws. For scale: the exact "
        f"output's mean square, the MSE of answering zeros, is {fmt(result['exact_mean_square'])}.",
        "",
        "| m | " + " | ".join(ERROR_METHODS) + " |",
        "|---|" + "---|" * len(ERROR_METHODS),
        *(
            f"| {m} | " + " | ".join(cell(by_key[method, m]) for method in ERROR_METHODS) + " |"
            for m in features
        ),
        "",
        f"- orthogonal beats iid at every m, positive features: **{beats['positive']}**",
        f"- orthogonal beats iid at every m, trigonometric features: **{beats['trigonometric']}**",
    ]
    nonfinite = sum(r.nonfinite_draws for r in rows)
    if nonfinite:
        lines.append(
            f"- {nonfinite} (method, m, draw) outputs held inf or NaN; they are left out of mean ± std."
        )
    return "\n".join(lines) + "\n"


def plot_favor_error(rows: list[ErrorRow], path: Path, exact_mean_square: float) -> None:
    """Log-log mean MSE against m, one line per method, shaded from the best to the worst finite draw;
    a dashed line at the MSE of answering zeros."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for method in ERROR_METHODS:
        ours = sorted((r for r in rows if r.method == method), key=lambda r: r.m)
        m = [r.m for r in ours]
        (line,) = ax.plot(m, [r.mse_mean for r in ours], "o-", label=method)
        ax.fill_between(
            m, [r.mse_min for r in ours], [r.mse_max for r in ours], color=line.get_color(), alpha=0.15
        )
    ax.axhline(exact_mean_square, color="grey", linestyle="--", label="answering zeros")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_title("mean over draws; band: best to worst draw", fontsize=9)
    ax.set_xlabel("random features m")
    ax.set_ylabel("output MSE vs exact softmax")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def favor_error_report(config: FavorErrorConfig, output_dir: str | Path) -> dict[str, Any]:
    """Run `favor_error_study` and write favor_error.{csv,md,png} and config.json into `output_dir`.
    Returns the study's result with the paths written under "files"."""
    out = Path(output_dir)
    settings = asdict(config) | {"features": list(config.features), "torch": torch.__version__}
    result = favor_error_study(config)
    files = {name: out / f"favor_error.{name}" for name in ("csv", "md", "png")} | {
        "config": out / "config.json"
    }
    write_csv(files["csv"], [asdict(r) for r in result["rows"]])
    with atomic_open(files["md"], "w") as handle:
        handle.write(favor_error_markdown(result, settings))
    plot_favor_error(result["rows"], files["png"], result["exact_mean_square"])
    findings = {k: result[k] for k in ("orthogonal_beats_iid", "exact_mean_square")}
    write_json(files["config"], settings | findings)
    return result | {"files": files}
