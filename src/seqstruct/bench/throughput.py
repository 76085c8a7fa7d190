"""Throughput benchmarks (never run by the fast tests): pretraining tokens/s on the HF Trainer, and
embedding sequences/s of `encode()` against plain transformers inference of the same model, in one run.
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from seqstruct.data.collate import MaskedLMCollator
from seqstruct.data.fasta import iter_fasta
from seqstruct.data.pretraining import protein_dataset
from seqstruct.data.tokenizers import build_protein_tokenizer
from seqstruct.embed import encode, load_encoder
from seqstruct.models.encoders import build_encoder
from seqstruct.train import save_model_dir, use_bf16


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
    max_length: int
    batch_size: int
    bf16: bool
    steps_timed: int
    tokens_per_second: float


def pretrain_throughput(
    fasta: Path, preset: str, max_length: int, batch_size: int, steps: int, precision: str = "auto"
) -> PretrainThroughput:
    """Train `steps` Trainer steps on proteins at least `max_length` long (so every batch is full)."""
    set_seed(0)
    tokenizer = build_protein_tokenizer()
    records = [r for r in iter_fasta(fasta) if len(r.sequence) >= max_length - 2]
    dataset = protein_dataset(records, max_length)
    timer = StepTimer(warmup=2)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            max_steps=steps + timer.warmup,
            per_device_train_batch_size=batch_size,
            learning_rate=1e-4,
            save_strategy="no",
            report_to="none",
            remove_unused_columns=False,
            bf16=use_bf16(precision),
            use_cpu=not torch.cuda.is_available(),
            dataloader_pin_memory=torch.cuda.is_available(),
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=build_encoder(preset, tokenizer),
            args=args,
            train_dataset=dataset,
            data_collator=MaskedLMCollator(tokenizer, max_length),
            callbacks=[timer],
        )
        trainer.train()
    tokens = batch_size * max_length * len(timer.times)
    return PretrainThroughput(
        preset, max_length, batch_size, args.bf16, len(timer.times), tokens / sum(timer.times)
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
