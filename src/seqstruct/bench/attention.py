"""Attention benchmarks (never run by the fast tests at full size).

`favor_error_report`: the Performer paper's approximation study (Choromanski et al. 2021, fig. 3). For
m random features and several independent draws, the mean squared error of the random-feature output
against exact softmax attention, for positive and trigonometric features with iid and orthogonal
projections. Every method sees the same q, k, v in a draw; the projection of a draw is seeded by
(seed, draw) alone, so the matrices for different m are nested (common random numbers: the curves
differ by m, not by luck). The exact reference is computed in float64; positive features go through
`favor_attention` (float32, stabilised: the production path), trigonometric features through
`kernel_attention` in float64 (there is no stabilised form: their normaliser can be ~0 or negative).

`attention_report`: wall time and peak memory of torch SDPA, seqstruct's `favor_attention` and
performer-pytorch's `FastAttention` for B=1 over doubling lengths, bidirectional and causal. Each
(method, mode, L) runs in a fresh Python process (`python -m seqstruct.bench.attention SPEC RESULT`),
so one case's allocator caches and peak cannot leak into the next. In that process:
  1. a warm-up at L=64 loads kernels and starts thread pools;
  2. q, k, v (and the output gradient) are allocated;
  3. the peak is reset and the baseline read: on CPU, writing 5 to /proc/self/clear_refs sets VmHWM
     to the current VmRSS (Linux ≥ 4.0); on CUDA, torch.cuda.reset_peak_memory_stats and
     memory_allocated;
  4. one forward+backward runs; peak_extra = VmHWM − baseline (CPU: resident memory the computation
     added, allocator overheads and one-time buffers included) or max_memory_allocated − baseline
     (CUDA: tensors only); either way the gradients of q, k, v (3·H·L·d numbers) are part of it. This
     run is also the timing warm-up;
  5. `repeats` forward passes (under no_grad: inference) and `repeats` forward+backward passes are
     timed; the medians are reported.
Where the kernel refuses the reset, the peak is VmHWM − VmRSS-at-baseline, an upper bound, and the row
says so. A case whose warm-up already exceeds `max_seconds` is timed once, and longer lengths of that
method and mode are skipped, as they are after a failure (out of memory, killed, timed out). On CPU the
child's address space is capped near the memory available when it starts, so a case too big for the
machine fails with an allocation error instead of waking the kernel's OOM killer.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from seqstruct.attention.favor import (
    FeatureKind,
    favor_attention,
    gaussian_projection,
    kernel_attention,
    softmax_attention,
)
from seqstruct.io import atomic_open, atomic_path

log = logging.getLogger(__name__)

PERFORMER_INSTALL = "pip install --no-deps performer-pytorch==1.1.4 einops local-attention==1.9.15 axial-positional-embedding==0.3.12"


def _pyplot() -> Any:
    """matplotlib on demand: the benchmark's child processes import this module but never plot."""
    import matplotlib

    matplotlib.use("Agg")  # headless: benchmarks run on servers
    import matplotlib.pyplot as plt

    return plt


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    with atomic_open(path, "w") as handle:
        json.dump(payload, handle, indent=2)
        handle.write("\n")


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_open(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


# ---------------------------------------------------------------------------------------------------
# Approximation error of random features (favor-error)
# ---------------------------------------------------------------------------------------------------

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


def favor_error_study(
    length: int = 4096,
    dim: int = 16,
    features: Sequence[int] = (16, 32, 64, 128, 256),
    draws: int = 10,
    seed: int = 0,
    input_std: float = 1.0,
) -> dict[str, Any]:
    """MSE of the four ERROR_METHODS for each m in `features` over `draws` draws. Returns {"rows":
    [ErrorRow], "orthogonal_beats_iid": {kind: bool}, "exact_mean_square": float}: whether the
    orthogonal projection's mean MSE is below the iid one's at every m (False where either is not
    finite), and the mean square of the exact output, which is the MSE of answering zeros: the yardstick.

    The estimators' variance grows like exp(|q + k|²) (q, k after the normaliser), so `input_std`
    decides the regime: at 1 with d=16, |q + k|² ≈ 2·√d = 8 and even m=256 features leave the output
    MSE above that yardstick; at 0.5 the error falls like 1/m."""
    if length < 1 or dim < 1 or draws < 1 or not features or min(features) < 2:
        raise ValueError("length, dim and draws must be positive and every m at least 2")
    errors = {(method, m): [] for method in ERROR_METHODS for m in features}
    exact_mean_square = 0.0
    for draw in range(draws):
        q, k, v = error_inputs(length, dim, _generator(seed, draw, 0), input_std)
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
        text = f"{_fmt(r.mse_mean)} ± {_fmt(r.mse_std, 2)}"
        return text + (f" ({r.nonfinite_draws}/{r.draws} non-finite)" if r.nonfinite_draws else "")

    beats = result["orthogonal_beats_iid"]
    lines = [
        f"# FAVOR+ approximation error (L={config['length']}, d={config['dim']}, q/k entry std {config['input_std']}, "
        f"{config['draws']} draws, seed {config['seed']})",
        "",
        "Output MSE against exact softmax attention (float64), mean ± std over draws. For scale: the exact "
        f"output's mean square, the MSE of answering zeros, is {_fmt(result['exact_mean_square'])}.",
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
    plt = _pyplot()
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


def favor_error_report(
    output_dir: str | Path,
    length: int = 4096,
    dim: int = 16,
    features: Sequence[int] = (16, 32, 64, 128, 256),
    draws: int = 10,
    seed: int = 0,
    input_std: float = 1.0,
) -> dict[str, Any]:
    """Run `favor_error_study` and write favor_error.{csv,md,png} and config.json into `output_dir`.
    Returns the study's result with the paths written under "files"."""
    out = Path(output_dir)
    config = {
        "length": length,
        "dim": dim,
        "features": list(features),
        "draws": draws,
        "seed": seed,
        "input_std": input_std,
        "torch": torch.__version__,
    }
    result = favor_error_study(length, dim, features, draws, seed, input_std)
    files = {name: out / f"favor_error.{name}" for name in ("csv", "md", "png")} | {
        "config": out / "config.json"
    }
    _write_csv(files["csv"], [asdict(r) for r in result["rows"]])
    with atomic_open(files["md"], "w") as handle:
        handle.write(favor_error_markdown(result, config))
    plot_favor_error(result["rows"], files["png"], result["exact_mean_square"])
    findings = {k: result[k] for k in ("orthogonal_beats_iid", "exact_mean_square")}
    _write_json(files["config"], config | findings)
    return result | {"files": files}


# ---------------------------------------------------------------------------------------------------
# Speed and memory (attention)
# ---------------------------------------------------------------------------------------------------

METHODS = ("sdpa", "favor", "performer")
MODES = ("bidirectional", "causal")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DEFAULT_LENGTHS = tuple(256 * 2**i for i in range(9))  # 256 ... 65536
_WARMUP_LENGTH = 64
_MIB = 1 << 20


@dataclass
class CaseSpec:
    """One (method, mode, L) measurement; travels to the child process as JSON."""

    method: str
    mode: str
    length: int
    heads: int
    head_dim: int
    features: int
    repeats: int
    max_seconds: float
    device: str
    dtype: str
    seed: int = 0


@dataclass
class CaseResult:
    method: str
    mode: str
    L: int
    fwd_s: float | None  # median over repeats, forward under no_grad
    fwdbwd_s: float | None  # median over repeats, forward + backward
    peak_extra_mib: float | None  # peak memory the forward+backward added to the inputs'
    note: str = ""


def favor_flops(batch: int, heads: int, length: int, features: int, head_dim: int) -> int:
    """Analytic FLOPs of one FAVOR+ forward+backward, counting the matmuls whose cost is L·m·d (each
    2·L·m·d per head: a multiply and an add per term) and nothing else (exps, sums, element-wise).
    Forward, 4: the query projection q Wᵀ, the key projection k Wᵀ, φ(k)ᵀ [v, 1] and φ(q) · KV.
    Backward, 8: recomputing q Wᵀ and k Wᵀ (features are not stored), and per side two gradient
    products and one projection back through W (φ(q)ᵀ g, g KVᵀ, · W; φ(k) dKV, [v, 1] dKVᵀ, · W).
    Total 12 · 2 · B·H·L·m·d. The [v, 1] column is d+1 wide and counted as d; the causal form's
    intra-chunk c×c products are not counted, so its figure understates the work it does."""
    return 12 * 2 * batch * heads * length * features * head_dim


def matmul_peak_gflops(size: int = 4096, repeats: int = 5, device: str = "cpu") -> float:
    """This machine's fp32 matmul rate: best of `repeats` square size×size products (2·size³ FLOPs)
    after one warm-up, in GFLOP/s; the ceiling the FAVOR+ matmuls can reach."""
    a, b = torch.randn(2, size, size, device=device)
    c = torch.empty(size, size, device=device)
    times = []
    for _ in range(repeats + 1):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b, out=c)
        _sync(device)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times[1:]) / 1e9


def _sync(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def performer_import_error() -> str | None:
    """None if performer-pytorch's FastAttention imports, else why not (one line)."""
    try:
        with warnings.catch_warnings():  # its distutils and torch.cuda.amp deprecations are not ours
            warnings.simplefilter("ignore")
            from performer_pytorch import FastAttention  # noqa: F401
    except Exception as err:  # any import failure means "skip it, say why"
        return f"{type(err).__name__}: {err}"
    return None


def attention_fn(spec: CaseSpec) -> tuple[Callable[[Tensor, Tensor, Tensor], Tensor], str]:
    """The attention to time, as f(q, k, v) over [B, H, L, d], and a note about it ("" if none)."""
    causal = spec.mode == "causal"
    if spec.method == "sdpa":
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=causal), ""
    if spec.method == "favor":
        generator = torch.Generator().manual_seed(spec.seed)
        projection = gaussian_projection(
            spec.features, spec.head_dim, generator=generator, device=spec.device
        )
        return lambda q, k, v: favor_attention(q, k, v, projection, causal=causal), ""
    if spec.method == "performer":
        from performer_pytorch import FastAttention

        torch.manual_seed(spec.seed)  # FastAttention draws its projection from the global RNG
        with contextlib.redirect_stdout(io.StringIO()):  # its causal fallback announces itself by print()
            module = FastAttention(dim_heads=spec.head_dim, nb_features=spec.features, causal=causal)
        module = module.to(spec.device)
        note = ""
        if causal and getattr(module.causal_linear_fn, "__name__", "") == "causal_linear_attention_noncuda":
            # Without fast-transformers' CUDA kernel it keeps a [B, H, L/128, m, d] prefix tensor per
            # chunk for autograd: O(L·m·d) memory.
            note = "performer-pytorch non-CUDA causal fallback"
        return module, note
    raise ValueError(f"unknown method {spec.method!r}; choose from {METHODS}")


def _status_kib(field: str) -> int:
    """A `VmXxx:` line of /proc/self/status, in KiB."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    """Set VmHWM to the current VmRSS (Linux ≥ 4.0); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def cap_address_space() -> None:
    """Limit this process's address space to what it maps now plus 90 % of MemAvailable, so that a case
    too large for the machine fails with an allocation error in this process instead of the kernel's
    OOM killer choosing a victim (perhaps not this process). CPU only: CUDA reserves vast address space."""
    with open("/proc/meminfo", encoding="ascii") as handle:
        available = next(int(line.split()[1]) for line in handle if line.startswith("MemAvailable:"))
    limit = (_status_kib("VmSize") + int(0.9 * available)) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _inputs(spec: CaseSpec, length: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """q, k, v [1, H, L, d] requiring grad, and an output gradient of the same shape."""
    generator = torch.Generator(device=spec.device).manual_seed(spec.seed)
    shape = (1, spec.heads, length, spec.head_dim)
    q, k, v, grad = (
        torch.randn(shape, generator=generator, device=spec.device, dtype=DTYPES[spec.dtype])
        for _ in range(4)
    )
    return q.requires_grad_(), k.requires_grad_(), v.requires_grad_(), grad


def _timed(fn: Callable, q: Tensor, k: Tensor, v: Tensor, grad: Tensor | None) -> float:
    """Seconds for one forward (grad None: under no_grad) or forward+backward."""
    device = q.device
    for x in (q, k, v):
        x.grad = None  # no accumulation into earlier gradients
    _sync(device)
    start = time.perf_counter()
    if grad is None:
        with torch.no_grad():
            fn(q, k, v)
    else:
        fn(q, k, v).backward(grad)
    _sync(device)
    return time.perf_counter() - start


def measure_case(spec: CaseSpec) -> CaseResult:
    """Time and peak memory of one (method, mode, L) in this process (see the module docstring)."""
    fn, note = attention_fn(spec)
    notes = [note] if note else []
    _timed(fn, *_inputs(spec, min(_WARMUP_LENGTH, spec.length)))  # kernels loaded, thread pools up
    cuda = torch.device(spec.device).type == "cuda"
    q, k, v, grad = _inputs(spec, spec.length)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
    else:
        if not _reset_peak_rss():
            notes.append("peak is an upper bound (VmHWM not resettable)")
        baseline = _status_kib("VmRSS") * 1024
    first = _timed(fn, q, k, v, grad)  # the memory run, and the timing warm-up
    peak = torch.cuda.max_memory_allocated() if cuda else _status_kib("VmHWM") * 1024
    peak_mib = (peak - baseline) / _MIB
    if first > spec.max_seconds:
        notes.append(f"timed once: warm-up took {first:.1f} s > {spec.max_seconds:g} s")
        fwd = _timed(fn, q, k, v, None)
        return CaseResult(spec.method, spec.mode, spec.length, fwd, first, peak_mib, "; ".join(notes))
    fwd = statistics.median(_timed(fn, q, k, v, None) for _ in range(spec.repeats))
    fwdbwd = statistics.median(_timed(fn, q, k, v, grad) for _ in range(spec.repeats))
    return CaseResult(spec.method, spec.mode, spec.length, fwd, fwdbwd, peak_mib, "; ".join(notes))


def _failure_note(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, MemoryError | torch.OutOfMemoryError) or "allocate memory" in text:
        return f"out of memory ({text[:120]})"
    return f"failed: {type(err).__name__}: {text[:200]}"


def measure_case_safely(spec: CaseSpec) -> CaseResult:
    """`measure_case`, with a failure (out of memory above all) turned into a row that says so."""
    try:
        return measure_case(spec)
    except (RuntimeError, MemoryError) as err:  # torch.OutOfMemoryError is a RuntimeError
        return CaseResult(spec.method, spec.mode, spec.length, None, None, None, _failure_note(err))


def _child_main(argv: list[str]) -> int:
    """Entry point of the fresh process: `python -m seqstruct.bench.attention SPEC.json RESULT.json`."""
    spec = CaseSpec(**json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    if torch.device(spec.device).type == "cpu":
        cap_address_space()
    result = measure_case_safely(spec)
    Path(argv[1]).write_text(json.dumps(asdict(result)), encoding="utf-8")
    return 0


def measure_case_isolated(spec: CaseSpec, timeout: float) -> CaseResult:
    """`measure_case` in a fresh Python process; a child that dies or overruns `timeout` gives a row
    that says so."""
    with tempfile.TemporaryDirectory(prefix="seqstruct-bench-") as tmp:
        spec_path, result_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
        spec_path.write_text(json.dumps(asdict(spec)), encoding="utf-8")
        command = [sys.executable, "-m", "seqstruct.bench.attention", str(spec_path), str(result_path)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return CaseResult(
                spec.method, spec.mode, spec.length, None, None, None, f"timed out after {timeout:.0f} s"
            )
        if result_path.exists():
            return CaseResult(**json.loads(result_path.read_text(encoding="utf-8")))
    if done.returncode < 0:
        why = f"killed by signal {-done.returncode}" + (" (out of memory?)" if done.returncode == -9 else "")
    else:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        why = f"failed: exit {done.returncode}: {last[:200]}"
    return CaseResult(spec.method, spec.mode, spec.length, None, None, None, why)


def _check_sizes(
    lengths: Sequence[int],
    heads: int,
    head_dim: int,
    features: int,
    repeats: int,
    methods: Sequence[str],
    modes: Sequence[str],
    dtype: str,
) -> None:
    if not set(methods) <= set(METHODS) or not set(modes) <= set(MODES) or dtype not in DTYPES:
        raise ValueError(f"methods from {METHODS}, modes from {MODES}, dtype from {tuple(DTYPES)}")
    if not lengths or min(lengths) < 1 or min(heads, head_dim, features, repeats) < 1:
        raise ValueError("lengths, heads, head_dim, features and repeats must be positive")


def attention_benchmark(
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    heads: int = 8,
    head_dim: int = 64,
    features: int = 256,
    repeats: int = 3,
    methods: Sequence[str] = METHODS,
    modes: Sequence[str] = MODES,
    max_seconds: float = 60.0,
    device: str = "cpu",
    dtype: str = "float32",
    isolate: bool = True,
) -> list[CaseResult]:
    """One CaseResult per (mode, method, L), lengths ascending. Once a method is slower than
    `max_seconds` (forward+backward) or fails at some L, its longer lengths are rows that say why they
    were skipped. `isolate=False` measures in this process: quicker, but allocator caches carry over
    between cases, so peaks are less trustworthy."""
    _check_sizes(lengths, heads, head_dim, features, repeats, methods, modes, dtype)
    unavailable = performer_import_error() if "performer" in methods else None
    # Startup (importing torch and transformers) plus a warm-up, the timed runs and slack for each.
    timeout = 300 + max_seconds * (2 * repeats + 4)
    results = []
    for mode in modes:
        for method in methods:
            skip = (
                f"skipped: performer-pytorch not importable ({unavailable}); {PERFORMER_INSTALL}"
                if (method == "performer" and unavailable)
                else None
            )
            for length in sorted(lengths):
                if skip:
                    results.append(CaseResult(method, mode, length, None, None, None, skip))
                    continue
                spec = CaseSpec(
                    method, mode, length, heads, head_dim, features, repeats, max_seconds, device, dtype
                )
                row = measure_case_isolated(spec, timeout) if isolate else measure_case_safely(spec)
                log.info(
                    "%s %s L=%d: fwd %s s, fwd+bwd %s s, peak +%s MiB %s",
                    method, mode, length, _fmt(row.fwd_s), _fmt(row.fwdbwd_s), _fmt(row.peak_extra_mib), row.note,
                )  # fmt: skip
                results.append(row)
                if row.fwdbwd_s is None:  # "out of memory", "failed", "killed by signal 9", "timed out ..."
                    skip = f"skipped: {row.note.split(':')[0].split(' (')[0]} at L={length}"
                elif row.fwdbwd_s > max_seconds:
                    skip = f"skipped: slower than {max_seconds:g} s at L={length}"
    return results


def machine_info(device: str) -> dict[str, Any]:
    """What the timings depend on: CPU model, threads torch uses, versions, the accelerator."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    info = {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
    }
    if torch.device(device).type == "cuda":
        info["cuda_device"] = torch.cuda.get_device_name(device)
    return info


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def attention_markdown(results: list[CaseResult], config: dict[str, Any]) -> str:
    """Per mode: a time table (per method forward and forward+backward, favor's analytic GFLOP/s and the
    favor ÷ sdpa, favor ÷ performer forward+backward time ratios), a peak-memory table, and the notes."""
    peak = config["matmul_peak_gflops"]
    methods = [m for m in METHODS if m in config["methods"]]
    others = [m for m in ("sdpa", "performer") if m in methods and "favor" in methods]
    lines = [
        f"# Attention speed and memory (B=1, H={config['heads']}, d={config['head_dim']}, m={config['features']}, "
        f"{config['dtype']} on {config['machine']['device']})",
        "",
        f"Machine: {config['machine'].get('cuda_device', config['machine']['cpu_model'])}, "
        f"{config['machine']['torch_threads']} torch threads, torch {config['machine']['torch']}. "
        f"Times are medians of {config['repeats']} runs after a warm-up, in seconds; forward under no_grad. "
        "Peak memory is what one forward+backward added to its inputs, in MiB "
        f"({'resident set, each case in a fresh process' if config['isolate'] else 'resident set, measured in-process'}"
        " on CPU; allocated tensors on CUDA).",
    ]
    for mode in config["modes"]:
        rows = {(r.method, r.L): r for r in results if r.mode == mode}
        lengths = sorted({r.L for r in results if r.mode == mode})
        time_head = [f"{m} fwd | {m} fwd+bwd" for m in methods]
        if "favor" in methods:
            time_head.append("favor GFLOP/s")
        time_head += [f"favor ÷ {o}" for o in others]
        lines += ["", f"## {mode}", "", "| L | " + " | ".join(time_head) + " |"]
        lines.append("|---|" + "---|" * sum(h.count("|") + 1 for h in time_head))
        best = longest = None  # (GFLOP/s, L) of favor's forward+backward
        for length in lengths:
            cells = []
            for m in methods:
                cells += [_fmt(rows[m, length].fwd_s), _fmt(rows[m, length].fwdbwd_s)]
            if "favor" in methods:
                seconds = rows["favor", length].fwdbwd_s
                flops = favor_flops(1, config["heads"], length, config["features"], config["head_dim"])
                rate = flops / seconds / 1e9 if seconds else None
                cells.append(_fmt(rate))
                if rate is not None:
                    longest = (rate, length)
                    best = max(best or longest, longest)
            cells += [
                _fmt(_ratio(rows["favor", length].fwdbwd_s, rows[o, length].fwdbwd_s), 2) for o in others
            ]
            lines.append(f"| {length} | " + " | ".join(cells) + " |")
        memory_head = [*methods, *(f"favor ÷ {o}" for o in others)]
        lines += ["", "Peak memory (MiB):", "", "| L | " + " | ".join(memory_head) + " |"]
        lines.append("|---|" + "---|" * len(memory_head))
        for length in lengths:
            cells = [_fmt(rows[m, length].peak_extra_mib) for m in methods]
            cells += [
                _fmt(_ratio(rows["favor", length].peak_extra_mib, rows[o, length].peak_extra_mib), 2)
                for o in others
            ]
            lines.append(f"| {length} | " + " | ".join(cells) + " |")
        if best is not None:
            lines += [
                "",
                f"favor forward+backward (analytic count 12·2·B·H·L·m·d): {_fmt(longest[0])} GFLOP/s at the "
                f"longest L measured ({longest[1]}), {_fmt(100 * longest[0] / peak, 2)} % of this machine's fp32 "
                f"matmul peak of {_fmt(peak)} GFLOP/s (square {config['matmul_size']} matmul, best of several); "
                f"best {_fmt(best[0])} GFLOP/s ({_fmt(100 * best[0] / peak, 2)} %) at L={best[1]}.",
            ]
        notes: dict[tuple[str, str], list[int]] = {}
        for r in results:
            if r.mode == mode and r.note:
                notes.setdefault((r.method, r.note), []).append(r.L)
        if notes:
            lines += ["", "Notes:", ""]
            lines += [f"- {m}, L = {', '.join(map(str, ls))}: {note}" for (m, note), ls in notes.items()]
    return "\n".join(lines) + "\n"


def plot_attention(results: list[CaseResult], modes: Sequence[str], path: Path) -> None:
    """Log-log time against L, one panel per mode, one colour per method: forward+backward solid,
    forward dashed."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 4), squeeze=False, sharey=True)
    for ax, mode in zip(axes[0], modes, strict=True):
        for index, method in enumerate(METHODS):
            ours = sorted((r for r in results if r.mode == mode and r.method == method), key=lambda r: r.L)
            timed = [r for r in ours if r.fwdbwd_s is not None]
            if not timed:
                continue
            colour = f"C{index}"
            ax.plot(
                [r.L for r in timed],
                [r.fwdbwd_s for r in timed],
                "o-",
                color=colour,
                label=f"{method} fwd+bwd",
            )
            ax.plot(
                [r.L for r in timed], [r.fwd_s for r in timed], "s--", color=colour, label=f"{method} fwd"
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(mode)
        ax.set_xlabel("sequence length L")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("seconds (median)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def attention_report(
    output_dir: str | Path,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    heads: int = 8,
    head_dim: int = 64,
    features: int = 256,
    repeats: int = 3,
    methods: Sequence[str] = METHODS,
    modes: Sequence[str] = MODES,
    max_seconds: float = 60.0,
    device: str = "cpu",
    dtype: str = "float32",
    isolate: bool = True,
    matmul_size: int = 4096,
) -> dict[str, Any]:
    """Run `attention_benchmark` and write attention.{csv,md,png} and config.json into `output_dir`.
    Returns {"results": [CaseResult], "config": ..., "files": {name: path}}."""
    _check_sizes(lengths, heads, head_dim, features, repeats, methods, modes, dtype)  # before the matmul
    out = Path(output_dir)
    config: dict[str, Any] = {
        "lengths": sorted(lengths),
        "heads": heads,
        "head_dim": head_dim,
        "features": features,
        "repeats": repeats,
        "methods": list(methods),
        "modes": list(modes),
        "max_seconds": max_seconds,
        "device": device,
        "dtype": dtype,
        "isolate": isolate,
        "matmul_size": matmul_size,
        "machine": machine_info(device),
        "performer_import_error": performer_import_error() if "performer" in methods else None,
    }
    # Measured before the cases, while nothing else of ours runs; always fp32, the precision favor uses.
    config["matmul_peak_gflops"] = matmul_peak_gflops(matmul_size, device=device)
    results = attention_benchmark(
        lengths, heads, head_dim, features, repeats, methods, modes, max_seconds, device, dtype, isolate
    )
    files = {name: out / f"attention.{name}" for name in ("csv", "md", "png")} | {
        "config": out / "config.json"
    }
    _write_csv(files["csv"], [asdict(r) for r in results])
    with atomic_open(files["md"], "w") as handle:
        handle.write(attention_markdown(results, config))
    plot_attention(results, modes, files["png"])
    _write_json(files["config"], config)
    return {"results": results, "config": config, "files": files}


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
