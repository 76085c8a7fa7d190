"""One attention case measured: wall time and peak memory of one (method, mode, L), in a fresh process.

`measure_case_isolated` runs `python -m seqstruct.bench.attention_case SPEC RESULT`, so that one case's
allocator caches and peak cannot leak into the next (the steps it takes are in `seqstruct.bench.attention`'s
docstring). The methods: torch SDPA (its own choice of backend, or one named: flash, memory-efficient),
seqstruct's `favor_attention` (the PyTorch path, fp32 inside), its Triton kernels (`favor-triton`, in the
inputs' dtype) and performer-pytorch's `FastAttention`. On CUDA each time is read from CUDA events around
the call; on the CPU from the wall clock.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from seqstruct.attention.favor import favor_attention, gaussian_projection
from seqstruct.bench.common import sync

METHODS = ("sdpa", "favor", "performer")  # measured by default, on any device
# Measured when named: SDPA pinned to one backend (torch.nn.attention.sdpa_kernel) and the Triton kernels.
# CUDA only, except favor-triton on the CPU under TRITON_INTERPRET=1 (a dry run, not a timing).
CUDA_METHODS = ("sdpa-flash", "sdpa-efficient", "favor-triton")
ALL_METHODS = METHODS + CUDA_METHODS
MODES = ("bidirectional", "causal")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_WARMUP_LENGTH = 64
# Read when a case runs: torch.nn.attention is imported only by the cases that pin a backend.
_SDPA_BACKENDS = {
    "sdpa-flash": lambda: torch.nn.attention.SDPBackend.FLASH_ATTENTION,
    "sdpa-efficient": lambda: torch.nn.attention.SDPBackend.EFFICIENT_ATTENTION,
}
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
    if spec.method in _SDPA_BACKENDS:
        from torch.nn.attention import sdpa_kernel

        backend = _SDPA_BACKENDS[spec.method]()

        def pinned(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
            # Only this backend may run (an error, not a fallback, where it cannot); the backward pass
            # belongs to the forward's op, so it needs no context of its own.
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

        return pinned, ""
    if spec.method in ("favor", "favor-triton"):
        generator = torch.Generator().manual_seed(spec.seed)
        projection = gaussian_projection(
            spec.features, spec.head_dim, generator=generator, device=spec.device
        )
        if spec.method == "favor":
            return lambda q, k, v: favor_attention(q, k, v, projection, causal=causal), ""
        from seqstruct.attention.kernels.favor import favor_triton

        return lambda q, k, v: favor_triton(q, k, v, projection, causal=causal), ""
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
    raise ValueError(f"unknown method {spec.method!r}; choose from {ALL_METHODS}")


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
    """Seconds for one forward (grad None: under no_grad) or forward+backward: between CUDA events
    recorded around it on CUDA (GPU time, without the host's launch latency before the first kernel),
    by the wall clock after a synchronisation elsewhere."""
    device = q.device
    for x in (q, k, v):
        x.grad = None  # no accumulation into earlier gradients
    sync(device)
    cuda = device.type == "cuda"
    if cuda:
        start_event, end_event = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start_event.record()
    start = time.perf_counter()
    if grad is None:
        with torch.no_grad():
            fn(q, k, v)
    else:
        fn(q, k, v).backward(grad)
    if cuda:
        end_event.record()
        end_event.synchronize()
        return start_event.elapsed_time(end_event) / 1000
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
    """Entry point of the fresh process: `python -m seqstruct.bench.attention_case SPEC.json RESULT.json`."""
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
        command = [sys.executable, "-m", "seqstruct.bench.attention_case", str(spec_path), str(result_path)]
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


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
