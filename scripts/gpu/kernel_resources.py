"""Compile the Triton FAVOR+ kernels for a GPU that is not here and print each one's registers and spills.

Triton's wheel carries ptxas and cuobjdump, so the whole compilation (Python front end, LLVM, ptxas) runs
on a CPU-only machine: this catches what the interpreter cannot (module globals that are not constexprs,
unsupported control flow, loop-carried type changes) and shows register pressure (STACK > 0: spills to
local memory) for each block size, which is how favor.py's BLOCK_M and warps were first chosen.

    .venv/bin/python scripts/gpu/kernel_resources.py --dtype bf16 --block-m 32 64 --warps 4 8
"""

from __future__ import annotations

import argparse
import inspect
import os
import subprocess
import tempfile

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from seqstruct.attention.kernels import favor_ops

KERNELS = ("key_state_kernel", "output_kernel", "query_state_kernel", "grad_kernel")
_INPUTS = {"q", "k", "v", "wq", "wk", "out", "g", "o", "dq", "dk", "dv"}  # pointers in the inputs' dtype
_TABLES = {"seq_start", "seq_len", "cu_chunks", "chunk_seq"}  # int32 pointers


def signature(kernel, dtype: str, meta: dict) -> tuple[dict, dict]:
    """Triton's signature and constexprs for `kernel`, from its parameter names."""
    types, constants = {}, {}
    for name in inspect.signature(kernel.fn).parameters:
        if name.isupper():
            types[name], constants[name] = "constexpr", meta[name]
        elif name.endswith("_ptr"):
            base = name[: -len("_ptr")]
            types[name] = (
                f"*{dtype}"
                if base in _INPUTS
                else "*i32"
                if base in _TABLES
                else "*i8"
                if base == "mask"
                else "*fp32"
            )
        else:
            types[name] = "fp32" if name == "half_s" else "i32"
    return types, constants


def resources(cubin: bytes) -> str:
    """cuobjdump's register and stack line for a cubin."""
    tools = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as handle:
        handle.write(cubin)
        handle.flush()
        usage = subprocess.run([os.path.join(tools, "cuobjdump"), "-res-usage", handle.name], capture_output=True, text=True, check=True)  # fmt: skip
    return " ".join(next(line for line in usage.stdout.splitlines() if "REG:" in line).split()[:2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--arch", type=int, default=90, help="compute capability x10 (90: H100/H200)")
    parser.add_argument("--block-l", type=int, default=64)
    parser.add_argument("--block-m", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--warps", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--kernels", nargs="+", choices=KERNELS, default=list(KERNELS))
    args = parser.parse_args()
    target = GPUTarget("cuda", args.arch, 32)
    block_d = max(16, triton.next_power_of_2(args.head_dim))
    for name in args.kernels:
        for causal in (False, True):
            for block_m in args.block_m:
                for warps in args.warps:
                    meta = {
                        "CAUSAL": causal, "HAS_MASK": True, "BLOCK_L": args.block_l, "BLOCK_M": block_m,
                        "BLOCK_DK": block_d, "BLOCK_DV": block_d, "INTERPRET": False,
                        "DT": tl.bfloat16 if args.dtype == "bf16" else tl.float32,
                        "PREC": "tf32" if args.dtype == "bf16" else "ieee",
                    }  # fmt: skip
                    types, constants = signature(getattr(favor_ops, name), args.dtype, meta)
                    compiled = triton.compile(
                        ASTSource(getattr(favor_ops, name), types, constants),
                        target=target,
                        options={"num_warps": warps},
                    )
                    mode = "causal" if causal else "bidirectional"
                    print(f"{name:20s} {mode:13s} {args.dtype} BLOCK_M={block_m:<3d} warps={warps}: "
                          f"{resources(compiled.asm['cubin'])}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
