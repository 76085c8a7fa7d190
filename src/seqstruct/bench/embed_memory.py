"""Peak memory of `seqstruct embed` against the number of proteins it embeds: the streaming promise
(memory that of one chunk, whatever the input's size) measured. Never run by the fast tests.

    seqstruct bench embed-memory [--sizes 5000 500000] [--max-length 64] [--workdir DIR] [-o results.json]

Each size gets a FASTA of random proteins (residues uniform over the 20 standard ones, lengths uniform in
[min_residues, max_residues]) and one `seqstruct embed` in a fresh process, whose own peak resident set
(`wait4`'s ru_maxrss) is read. Every residue is read and tokenised, which is what grows with the input in
an embed that is not streamed; the model is `tiny` and reads the first max_length tokens (`embed
--max-length`), so that 500,000 proteins take minutes on a CPU and the model's working set (bounded by
max_tokens whatever the input) stays small beside the rest. Linux only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from seqstruct.bench.common import machine_info, write_json
from seqstruct.data.fasta import STANDARD_RESIDUES, FastaRecord, write_fasta
from seqstruct.data.tokenizers import build_protein_tokenizer
from seqstruct.models.encoders import build_encoder
from seqstruct.models.io import save_model_dir


@dataclass
class EmbedMemoryConfig:
    """`seqstruct bench embed-memory`: the input sizes, their proteins and the embed settings."""

    sizes: tuple[int, ...] = (5000, 500000)  # proteins per run, ascending; the first is the reference
    min_residues: int = 50  # length of the shortest protein
    max_residues: int = 1000  # of the longest
    preset: str = "tiny"  # model architecture, seed 0
    max_length: int | None = 64  # `embed --max-length`: tokens the model reads (None: every one)
    batch_size: int = 64  # `embed --batch-size`
    max_tokens: int = 16384  # `embed --max-tokens`
    seed: int = 0  # the proteins' draw
    threads: int | None = (
        1  # OMP_NUM_THREADS of embed: on a shared CPU, spinning threads cost 3x; None: default
    )
    workdir: str | None = None  # FASTA files, model and outputs (default: a temporary directory, removed)


@dataclass
class EmbedMemoryRun:
    proteins: int
    residues: int
    seconds: float  # wall time of the embed process, start-up and model load included
    peak_rss_mib: float


def random_fasta(path: Path, n: int, min_residues: int, max_residues: int, seed: int) -> int:
    """Write `n` random proteins to `path`; returns their residues."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(STANDARD_RESIDUES.encode(), dtype=np.uint8)
    lengths = rng.integers(min_residues, max_residues + 1, size=n)
    records = (
        FastaRecord(f"R{i:07d}", "", letters[rng.integers(0, len(letters), size=length)].tobytes().decode())
        for i, length in enumerate(lengths)
    )
    write_fasta(records, path)
    return int(lengths.sum())


def peak_of(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of `command` run to its end: the child's own rusage from wait4,
    which RUSAGE_CHILDREN (the maximum over every child so far) would not give per run."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {child.returncode}")
    return seconds, usage.ru_maxrss / 1024  # KiB on Linux


def embed_memory_runs(config: EmbedMemoryConfig, workdir: Path) -> list[EmbedMemoryRun]:
    """One run per size in `config.sizes`, its files under `workdir`."""
    tokenizer = build_protein_tokenizer()
    torch.manual_seed(0)
    save_model_dir(build_encoder(config.preset, tokenizer), tokenizer, workdir / "model")
    runs = []
    for n in config.sizes:
        fasta = workdir / f"random-{n}.fasta"
        residues = random_fasta(fasta, n, config.min_residues, config.max_residues, config.seed)
        command = [sys.executable, "-m", "seqstruct.cli", "embed", str(workdir / "model"), str(fasta)]
        command += ["-o", str(workdir / f"random-{n}.npz"), "--batch-size", str(config.batch_size)]
        command += ["--max-tokens", str(config.max_tokens)]
        if config.max_length is not None:
            command += ["--max-length", str(config.max_length)]
        threads = {} if config.threads is None else {"OMP_NUM_THREADS": str(config.threads)}
        seconds, peak = peak_of(command, os.environ | threads)
        runs.append(EmbedMemoryRun(n, residues, seconds, peak))
        fasta.unlink()  # the largest inputs are hundreds of MB
    return runs


def embed_memory_report(config: EmbedMemoryConfig, output: str | Path | None = None) -> str:
    """Run every size; return a markdown table (and write the runs and the machine as JSON to `output`)."""
    if config.workdir is None:
        with tempfile.TemporaryDirectory(prefix="embed-memory-") as scratch:
            runs = embed_memory_runs(config, Path(scratch))
    else:
        Path(config.workdir).mkdir(parents=True, exist_ok=True)
        runs = embed_memory_runs(config, Path(config.workdir))
    lines = ["| proteins | residues | wall s | peak RSS MiB | vs first |", "|---|---|---|---|---|"]
    for run in runs:
        lines.append(
            f"| {run.proteins:,} | {run.residues:,} | {run.seconds:.0f} | {run.peak_rss_mib:.0f} | "
            f"{run.peak_rss_mib / runs[0].peak_rss_mib:.2f}x |"
        )
    if output:
        write_json(
            output,
            {"config": asdict(config), "runs": [asdict(r) for r in runs], "machine": machine_info("cpu")},
        )
    return "\n".join(lines)
