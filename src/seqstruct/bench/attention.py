"""Attention speed and memory over sequence length (never run by the fast tests at full size).

`attention_report`: time and peak memory of torch SDPA, seqstruct's `favor_attention` and
performer-pytorch's `FastAttention` for B=1 over doubling lengths, bidirectional and causal; on CUDA
also SDPA pinned to its flash and memory-efficient backends and the Triton FAVOR+ kernels
(`attention_case.CUDA_METHODS`), each time against the FLOPs of FAVOR+ and the fewest bytes any
implementation must move (`min_bytes`), beside the machine's measured matmul and copy rates. Each
(method, mode, L) runs in a fresh Python process (`python -m seqstruct.bench.attention_case SPEC RESULT`),
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

import logging
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from seqstruct.bench.attention_case import (
    ALL_METHODS,
    CUDA_METHODS,
    DTYPES,
    METHODS,
    MODES,
    CaseResult,
    CaseSpec,
    measure_case_isolated,
    measure_case_safely,
    performer_import_error,
)
from seqstruct.bench.common import fmt, machine_info, pyplot, sync, write_csv, write_json
from seqstruct.io import atomic_open, atomic_path

log = logging.getLogger(__name__)

PERFORMER_INSTALL = "pip install --no-deps performer-pytorch==1.1.4 einops local-attention==1.9.15 axial-positional-embedding==0.3.12"
DEFAULT_LENGTHS = tuple(256 * 2**i for i in range(9))  # 256 ... 65536


@dataclass
class AttentionBenchConfig:
    """`seqstruct bench attention`: the cases to measure and how. Field order is config.json's."""

    lengths: Sequence[int] = DEFAULT_LENGTHS  # sequence lengths L, measured ascending
    heads: int = 8  # H; the batch is 1
    head_dim: int = 64  # d per head
    features: int = 256  # favor's and performer's random features m
    repeats: int = 3  # timed runs per case (median), after a warm-up
    methods: Sequence[str] = METHODS  # from ALL_METHODS (CUDA_METHODS need device cuda)
    modes: Sequence[str] = MODES  # from MODES
    max_seconds: float = 60.0  # longer L of a method and mode are skipped once fwd+bwd exceeds this
    device: str = "cpu"  # cpu or cuda
    dtype: str = "float32"  # a key of DTYPES
    isolate: bool = True  # each case in a fresh process (False: quicker, peaks less trustworthy)
    matmul_size: int = 4096  # the square fp32 matmul that measures the machine's peak
    copy_mib: int = 256  # MiB copied device to device to measure the memory bandwidth (use >> cache size)

    def __post_init__(self) -> None:
        # Checked here, before the report's minutes-long matmul, not after.
        methods, modes = set(self.methods), set(self.modes)
        if not methods <= set(ALL_METHODS) or not modes <= set(MODES) or self.dtype not in DTYPES:
            raise ValueError(f"methods from {ALL_METHODS}, modes from {MODES}, dtype from {tuple(DTYPES)}")
        cuda_only = sorted(methods & set(CUDA_METHODS) - _interpretable())
        if cuda_only and torch.device(self.device).type != "cuda":
            raise ValueError(f"{', '.join(cuda_only)} run on CUDA only: add --device cuda")
        sizes = (self.heads, self.head_dim, self.features, self.repeats)
        if not self.lengths or min(self.lengths) < 1 or min(sizes) < 1:
            raise ValueError("lengths, heads, head_dim, features and repeats must be positive")

    def case(self, method: str, mode: str, length: int) -> CaseSpec:
        """The CaseSpec of one (method, mode, L) under these settings."""
        shared = ("heads", "head_dim", "features", "repeats", "max_seconds", "device", "dtype")
        return CaseSpec(method=method, mode=mode, length=length, **{k: getattr(self, k) for k in shared})


def _interpretable() -> set[str]:
    """CUDA methods that a CPU can still run, slowly: the Triton kernels under TRITON_INTERPRET=1."""
    return {"favor-triton"} if os.environ.get("TRITON_INTERPRET") == "1" else set()


def min_bytes(batch: int, heads: int, length: int, head_dim: int, itemsize: int, backward: bool) -> int:
    """The fewest bytes any attention must move through memory: read q, k, v and write the output
    (forward, 4 tensors of B·H·L·d), and with the backward pass also read the output gradient and write
    dq, dk, dv (8 in all). Dividing by the time gives a lower bound on the bandwidth achieved, the
    figure to hold against the machine's copy rate (the memory roofline)."""
    return (8 if backward else 4) * batch * heads * length * head_dim * itemsize


def copy_peak_gbps(mib: int = 256, repeats: int = 5, device: str = "cpu") -> float:
    """This machine's memory bandwidth: best of `repeats` copies of `mib` MiB (bytes read + written)."""
    source = torch.ones(mib << 18, device=device)  # float32: 4 bytes
    target = torch.empty_like(source)
    times = []
    for _ in range(repeats + 1):
        sync(device)
        start = time.perf_counter()
        target.copy_(source)
        sync(device)
        times.append(time.perf_counter() - start)
    return 2 * source.numel() * 4 / min(times[1:]) / 1e9


def favor_flops(batch: int, heads: int, length: int, features: int, head_dim: int) -> int:
    """Analytic FLOPs of one FAVOR+ forward+backward, counting the matmuls whose cost is L·m·d (each
    2·L·m·d per head: a multiply and an add per term) and nothing else (exps, sums, element-wise).
    Forward, 4: the query projection q Wᵀ, the key projection k Wᵀ, φ(k)ᵀ [v, 1] and φ(q) · KV.
    Backward, 8: recomputing q Wᵀ and k Wᵀ (features are not stored), and per side two gradient
    products and one projection back through W (φ(q)ᵀ g, g KVᵀ, · W; φ(k) dKV, [v, 1] dKVᵀ, · W).
    Total 12 · 2 · B·H·L·m·d. The [v, 1] column is d+1 wide and counted as d; the causal form's
    intra-chunk c×c products are not counted, so its figure understates the work it does."""
    return 12 * 2 * batch * heads * length * features * head_dim


def matmul_peak_gflops(
    size: int = 4096, repeats: int = 5, device: str = "cpu", dtype: torch.dtype = torch.float32
) -> float:
    """This machine's matmul rate in `dtype`: best of `repeats` square size×size products (2·size³
    FLOPs) after one warm-up, in GFLOP/s; the ceiling the FAVOR+ matmuls can reach."""
    a, b = torch.randn(2, size, size, device=device, dtype=dtype)
    c = torch.empty(size, size, device=device, dtype=dtype)
    times = []
    for _ in range(repeats + 1):
        sync(device)
        start = time.perf_counter()
        torch.mm(a, b, out=c)
        sync(device)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / min(times[1:]) / 1e9


def attention_benchmark(config: AttentionBenchConfig) -> list[CaseResult]:
    """One CaseResult per (mode, method, L), lengths ascending. Once a method is slower than
    `max_seconds` (forward+backward) or fails at some L, its longer lengths are rows that say why they
    were skipped. `isolate=False` measures in this process: quicker, but allocator caches carry over
    between cases, so peaks are less trustworthy."""
    unavailable = performer_import_error() if "performer" in config.methods else None
    # Startup (importing torch and transformers) plus a warm-up, the timed runs and slack for each.
    timeout = 300 + config.max_seconds * (2 * config.repeats + 4)
    results = []
    for mode in config.modes:
        for method in config.methods:
            skip = (
                f"skipped: performer-pytorch not importable ({unavailable}); {PERFORMER_INSTALL}"
                if (method == "performer" and unavailable)
                else None
            )
            for length in sorted(config.lengths):
                if skip:
                    results.append(CaseResult(method, mode, length, None, None, None, skip))
                    continue
                spec = config.case(method, mode, length)
                row = measure_case_isolated(spec, timeout) if config.isolate else measure_case_safely(spec)
                log.info(
                    "%s %s L=%d: fwd %s s, fwd+bwd %s s, peak +%s MiB %s",
                    method, mode, length, fmt(row.fwd_s), fmt(row.fwdbwd_s), fmt(row.peak_extra_mib), row.note,
                )  # fmt: skip
                results.append(row)
                if row.fwdbwd_s is None:  # "out of memory", "failed", "killed by signal 9", "timed out ..."
                    skip = f"skipped: {row.note.split(':')[0].split(' (')[0]} at L={length}"
                elif row.fwdbwd_s > config.max_seconds:
                    skip = f"skipped: slower than {config.max_seconds:g} s at L={length}"
    return results


def attention_machine(device: str) -> dict[str, Any]:
    """The shared machine description, with the Python version and, on CUDA, the accelerator's name."""
    info = machine_info(device) | {"python": platform.python_version()}
    if torch.device(device).type == "cuda":
        info["cuda_device"] = torch.cuda.get_device_name(device)
    return info


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


_FAVORS = ("favor", "favor-triton")  # FAVOR+ implementations, held against the baselines below
_BASELINES = ("sdpa", "sdpa-flash", "sdpa-efficient", "performer")
_SHORT = {"float32": "fp32", "bfloat16": "bf16"}


def attention_markdown(results: list[CaseResult], config: dict[str, Any]) -> str:
    """Per mode: a time table (per method forward and forward+backward, each FAVOR+ method's analytic
    GFLOP/s, and FAVOR+ ÷ baseline forward+backward time ratios), a bandwidth table (min_bytes over the
    forward+backward time, and its share of the measured copy rate), a peak-memory table, and the notes."""
    peak = config["matmul_peak_gflops"]
    copy = config.get("copy_peak_gbps")
    itemsize = DTYPES[config["dtype"]].itemsize
    methods = [m for m in ALL_METHODS if m in config["methods"]]
    favors = [m for m in _FAVORS if m in methods]
    pairs = [(f, o) for f in favors for o in _BASELINES if o in methods]
    lines = [
        f"# Attention speed and memory (B=1, H={config['heads']}, d={config['head_dim']}, m={config['features']}, "
        f"{config['dtype']} on {config['machine']['device']})",
        "",
        f"Machine: {config['machine'].get('cuda_device', config['machine']['cpu_model'])}, "
        f"{config['machine']['torch_threads']} torch threads, torch {config['machine']['torch']}. "
        f"Times are medians of {config['repeats']} runs after a warm-up, in seconds "
        f"({'CUDA events' if config['machine']['device'].startswith('cuda') else 'wall clock'}); forward under "
        "no_grad. Peak memory is what one forward+backward added to its inputs, in MiB "
        f"({'resident set, each case in a fresh process' if config['isolate'] else 'resident set, measured in-process'}"
        " on CPU; allocated tensors on CUDA).",
    ]
    for mode in config["modes"]:
        rows = {(r.method, r.L): r for r in results if r.mode == mode}
        lengths = sorted({r.L for r in results if r.mode == mode})
        time_head = [f"{m} fwd | {m} fwd+bwd" for m in methods]
        time_head += [f"{f} GFLOP/s" for f in favors]
        time_head += [f"{f} ÷ {o}" for f, o in pairs]
        lines += ["", f"## {mode}", "", "| L | " + " | ".join(time_head) + " |"]
        lines.append("|---|" + "---|" * sum(h.count("|") + 1 for h in time_head))
        rates: dict[str, list[tuple[float, int]]] = {f: [] for f in favors}  # (GFLOP/s, L) per FAVOR+ method
        for length in lengths:
            cells = []
            for m in methods:
                cells += [fmt(rows[m, length].fwd_s), fmt(rows[m, length].fwdbwd_s)]
            for f in favors:
                seconds = rows[f, length].fwdbwd_s
                flops = favor_flops(1, config["heads"], length, config["features"], config["head_dim"])
                rate = flops / seconds / 1e9 if seconds else None
                cells.append(fmt(rate))
                if rate is not None:
                    rates[f].append((rate, length))
            cells += [fmt(_ratio(rows[f, length].fwdbwd_s, rows[o, length].fwdbwd_s), 2) for f, o in pairs]
            lines.append(f"| {length} | " + " | ".join(cells) + " |")
        lines += [
            "",
            f"Bandwidth of forward+backward, GB/s: the fewest bytes any attention moves (8·B·H·L·d·{itemsize}: "
            "q, k, v, output gradient read; dq, dk, dv written) over its time"
            + (f"; in brackets the share of this machine's copy rate, {fmt(copy)} GB/s" if copy else "")
            + ":",
            "",
            "| L | " + " | ".join(methods) + " |",
            "|---|" + "---|" * len(methods),
        ]
        for length in lengths:
            cells = []
            for m in methods:
                seconds = rows[m, length].fwdbwd_s
                moved = min_bytes(1, config["heads"], length, config["head_dim"], itemsize, backward=True)
                gbps = moved / seconds / 1e9 if seconds else None
                share = f" ({fmt(100 * gbps / copy, 2)} %)" if gbps is not None and copy else ""
                cells.append(fmt(gbps) + share)
            lines.append(f"| {length} | " + " | ".join(cells) + " |")
        memory_head = [*methods, *(f"{f} ÷ {o}" for f, o in pairs)]
        lines += ["", "Peak memory (MiB):", "", "| L | " + " | ".join(memory_head) + " |"]
        lines.append("|---|" + "---|" * len(memory_head))
        for length in lengths:
            cells = [fmt(rows[m, length].peak_extra_mib) for m in methods]
            cells += [
                fmt(_ratio(rows[f, length].peak_extra_mib, rows[o, length].peak_extra_mib), 2)
                for f, o in pairs
            ]
            lines.append(f"| {length} | " + " | ".join(cells) + " |")
        for f in favors:
            if not rates[f]:
                continue
            longest, best = rates[f][-1], max(rates[f])
            lines += [
                "",
                f"{f} forward+backward (analytic count 12·2·B·H·L·m·d): {fmt(longest[0])} GFLOP/s at the "
                f"longest L measured ({longest[1]}), {fmt(100 * longest[0] / peak, 2)} % of this machine's "
                f"{_SHORT.get(config['dtype'], config['dtype'])} matmul peak of {fmt(peak)} GFLOP/s (square "
                f"{config['matmul_size']} matmul, best of several); best {fmt(best[0])} GFLOP/s "
                f"({fmt(100 * best[0] / peak, 2)} %) at L={best[1]}.",
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
    plt = pyplot()
    fig, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 4), squeeze=False, sharey=True)
    for ax, mode in zip(axes[0], modes, strict=True):
        for index, method in enumerate(ALL_METHODS):
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


def attention_report(config: AttentionBenchConfig, output_dir: str | Path) -> dict[str, Any]:
    """Run `attention_benchmark` and write attention.{csv,md,png} and config.json into `output_dir`.
    Returns {"results": [CaseResult], "config": ..., "files": {name: path}}."""
    out = Path(output_dir)
    settings: dict[str, Any] = asdict(config) | {
        "lengths": sorted(config.lengths),
        "methods": list(config.methods),
        "modes": list(config.modes),
        "machine": attention_machine(config.device),
        "performer_import_error": performer_import_error() if "performer" in config.methods else None,
    }
    # Measured before the cases, while nothing else of ours runs, in the cases' dtype (favor's PyTorch
    # path computes in fp32 whatever its inputs, so its share of a bf16 peak understates it).
    settings["matmul_peak_gflops"] = matmul_peak_gflops(
        config.matmul_size, device=config.device, dtype=DTYPES[config.dtype]
    )
    settings["copy_peak_gbps"] = copy_peak_gbps(config.copy_mib, device=config.device)
    results = attention_benchmark(config)
    files = {name: out / f"attention.{name}" for name in ("csv", "md", "png")} | {
        "config": out / "config.json"
    }
    write_csv(files["csv"], [asdict(r) for r in results])
    with atomic_open(files["md"], "w") as handle:
        handle.write(attention_markdown(results, settings))
    plot_attention(results, config.modes, files["png"])
    write_json(files["config"], settings)
    return {"results": results, "config": settings, "files": files}
