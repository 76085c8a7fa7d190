"""Throughput benchmarks (never run by the fast tests): pretraining tokens/s on the HF Trainer, and
embedding sequences/s of `encode()` against plain transformers inference of the same model, in one run.
"""

from __future__ import annotations

import itertools
import json
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import ProgressCallback, TrainerCallback, set_seed

from seqstruct.config import DataConfig, ModelConfig, PretrainConfig, TrainConfig
from seqstruct.data.fasta import iter_fasta
from seqstruct.data.pretraining import protein_dataset
from seqstruct.data.tokenizers import build_protein_tokenizer
from seqstruct.embed import encode, load_encoder
from seqstruct.io import atomic_open
from seqstruct.models.encoders import build_encoder, save_model_dir
from seqstruct.train import build_trainer


class StepTimer(TrainerCallback):
    """Wall time of optimiser steps after the first `warmup` (allocator and thread-pool start-up)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.times, self._start = warmup, [], 0.0

    def on_step_begin(self, args, state, control, **kwargs) -> None:  # noqa: ANN001
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs) -> None:  # noqa: ANN001
        if state.global_step > self.warmup:
            self.times.append(time.perf_counter() - self._start)


@dataclass
class PretrainThroughput:
    preset: str
    attention: str
    max_length: int
    batch_size: int
    bf16: bool
    steps_timed: int
    tokens_per_second: float
    peak_rss_gib: float  # the process's peak resident memory so far (a run's largest case dominates)


def pretrain_throughput(
    fasta: Path,
    preset: str,
    max_length: int,
    batch_size: int,
    steps: int,
    precision: str = "auto",
    attention: str = "sdpa",
) -> PretrainThroughput:
    """Train `steps` steps with pretraining's own Trainer on proteins at least `max_length` long (so
    every batch is full), timing each step after two warm-up steps."""
    tokenizer = build_protein_tokenizer()
    records = [r for r in iter_fasta(fasta) if len(r.sequence) >= max_length - 2]
    if not records:
        raise ValueError(f"{fasta}: no protein of at least {max_length - 2} residues to fill batches")
    timer = StepTimer(warmup=2)
    with tempfile.TemporaryDirectory() as tmp:
        config = PretrainConfig(
            output_dir=tmp,
            model=ModelConfig(preset=preset, attention=attention),
            data=DataConfig(fasta=str(fasta), max_length=max_length),
            train=TrainConfig(
                max_steps=steps + timer.warmup,
                batch_size=batch_size,
                save_steps=10**9,
                precision=precision,
                warmup_steps=0,
            ),
        )
        set_seed(0)
        model = build_encoder(preset, tokenizer, attention, favor=config.model.favor)
        trainer = build_trainer(config, model, tokenizer, protein_dataset(records, max_length))
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(timer)
        trainer.train()
        bf16 = trainer.args.bf16
    tokens = batch_size * max_length * len(timer.times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return PretrainThroughput(
        preset, attention, max_length, batch_size, bf16, len(timer.times), tokens / sum(timer.times), peak
    )


@torch.inference_mode()
def plain_transformers_embed(
    model: Any, tokenizer: Any, sequences: list[str], batch_size: int, max_length: int
) -> None:
    """What a user writes without seqstruct: fixed-size batches in input order, padded, mean over the mask."""
    for start in range(0, len(sequences), batch_size):
        batch = tokenizer(
            sequences[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
            return_token_type_ids=False,
        )
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        (hidden * mask).sum(1) / mask.sum(1)


def embed_throughput(
    fasta: Path, preset: str, n: int, batch_size: int, max_length: int, repeats: int
) -> dict[str, Any]:
    """Sequences/s of seqstruct's `encode` and of plain inference, alternated `repeats` times in one run."""
    tokenizer = build_protein_tokenizer()
    sequences = [r.sequence for r in itertools.islice(iter_fasta(fasta), n)]
    with tempfile.TemporaryDirectory() as tmp:
        set_seed(0)
        save_model_dir(build_encoder(preset, tokenizer), tokenizer, Path(tmp))
        model, loaded_tokenizer = load_encoder(tmp)
    budget = batch_size * max_length
    ours, plain = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        encode(
            model,
            loaded_tokenizer,
            sequences,
            batch_size=batch_size,
            max_tokens=budget,
            max_length=max_length,
        )
        ours.append(len(sequences) / (time.perf_counter() - start))
        start = time.perf_counter()
        plain_transformers_embed(model, loaded_tokenizer, sequences, batch_size, max_length)
        plain.append(len(sequences) / (time.perf_counter() - start))
    ratios = [a / b for a, b in zip(ours, plain, strict=True)]
    return {
        "preset": preset,
        "sequences": len(sequences),
        "batch_size": batch_size,
        "max_length": max_length,
        "encode_seq_per_s": statistics.median(ours),
        "plain_seq_per_s": statistics.median(plain),
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
    }


def throughput_report(
    fasta: Path,
    preset: str,
    lengths: list[int],
    batch_size: int,
    steps: int,
    precision: str,
    embed_n: int,
    embed_batch_size: int,
    embed_max_length: int,
    repeats: int,
    output: str | None = None,
    attentions: tuple[str, ...] = ("sdpa",),
) -> str:
    """Run both benchmarks (embedding only when embed_n > 0); return markdown tables (and write the
    raw figures as JSON to `output`). Lengths run in the order given, so put the longest last: the
    peak-memory column is the process's running maximum."""
    rows = [
        pretrain_throughput(fasta, preset, n, batch_size, steps, precision, attention)
        for n in lengths
        for attention in attentions
    ]
    lines = [
        "| preset | attention | max_length | batch | bf16 | steps timed | pretraining tokens/s | peak RSS so far (GiB) |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {r.preset} | {r.attention} | {r.max_length} | {r.batch_size} | {r.bf16} | {r.steps_timed} | "
            f"{r.tokens_per_second:.0f} | {r.peak_rss_gib:.1f} |"
            for r in rows
        ),
    ]
    e = None
    if embed_n > 0:
        e = embed_throughput(fasta, preset, embed_n, embed_batch_size, embed_max_length, repeats)
        lines += [
            "",
            "| preset | proteins | batch | max_length | `encode` seq/s | plain transformers seq/s | ratio (median of pairs) |",
            "|---|---|---|---|---|---|---|",
            f"| {e['preset']} | {e['sequences']} | {e['batch_size']} | {e['max_length']} | {e['encode_seq_per_s']:.1f} | "
            f"{e['plain_seq_per_s']:.1f} | {e['ratio_median']:.2f} |",
        ]
    if output:
        with atomic_open(output, "w") as handle:
            json.dump({"pretrain": [vars(r) for r in rows], "embed": e}, handle, indent=2)
    return "\n".join(lines)
