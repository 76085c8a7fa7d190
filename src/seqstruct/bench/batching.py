"""Pretraining throughput of the two ways of batching, in one run: `batch_size` proteins a batch grouped by
length (the Trainer's `group_by_length`, seqstruct's default) against token-budget batches
(`data.max_tokens`, ESM's length-sorted batching). Never run by the fast tests.

    seqstruct bench batching [--preset small] [--max-length 512] [--batch-size 16] [--steps 10] [--repeats 2]

Both arms train the same model size on the same proteins (the embedded Swiss-Prot sample, all lengths, so
padding counts) with pretraining's own Trainer; the token budget is batch_size x max_length, the most a
fixed-row batch can hold. Each timed block is `steps` optimiser steps after two warm-up steps, the arms
alternate `repeats` times (the machine is shared: a ratio taken in one run is what can be trusted), and
the figure that matters is *useful* tokens a second: residues and special tokens, padding excluded.
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from transformers import ProgressCallback, set_seed

from seqstruct.bench.common import StepTimer, write_json
from seqstruct.bench.throughput import machine_and_libraries
from seqstruct.config import DataConfig, ModelConfig, PretrainConfig, TrainConfig
from seqstruct.data.fasta import iter_fasta
from seqstruct.data.pretraining import sequence_dataset
from seqstruct.data.sources.embedded import SAMPLE_FASTA
from seqstruct.data.tokenizers import build_protein_tokenizer
from seqstruct.models.encoders import build_encoder
from seqstruct.training.mlm import build_trainer


@dataclass
class BatchingConfig:
    """`seqstruct bench batching`: the model, the proteins and how long each arm is timed."""

    preset: str = "small"  # model architecture, seed 0
    max_length: int = 512  # tokens per protein; the token budget is batch_size x max_length
    batch_size: int = 16  # rows of the `rows` arm
    steps: int = 10  # timed steps (after 2 warm-up steps) per block
    repeats: int = 2  # times the two arms alternate
    precision: str = "auto"  # auto | fp32 | bf16
    proteins: int = 4000  # the first N proteins of the embedded sample


@dataclass
class BatchingRun:
    arm: str  # rows (batch_size proteins, length-grouped) | tokens (token budget)
    steps_timed: int
    useful_tokens_per_s: float  # non-padding tokens per second of timed steps
    padding_fraction: float  # padded tokens among rows x longest over the timed steps


class _TokenCounter(StepTimer):
    """StepTimer that also counts, per timed step, the non-padding and padded tokens of its batches."""

    def __init__(self, warmup: int) -> None:
        super().__init__(warmup)
        self.useful: list[int] = []
        self._seen = 0

    def on_step_end(self, args, state, control, **kwargs) -> None:  # noqa: ANN001
        super().on_step_end(args, state, control, **kwargs)
        if state.global_step > self.warmup:
            self.useful.append(state.num_input_tokens_seen - self._seen)
        self._seen = state.num_input_tokens_seen


def _padding(trainer, batches: int) -> float:  # noqa: ANN001
    """Share of padded tokens among rows x longest in the first `batches` batches the Trainer's training
    data loader draws (a property of the batching, measured on batches like the timed ones)."""
    useful = padded = 0
    for i, batch in enumerate(trainer.get_train_dataloader()):
        if i >= batches:
            break
        useful += int(batch["attention_mask"].sum())
        padded += batch["input_ids"].numel()
    return 1.0 - useful / padded


def batching_run(records: list, arm: str, config: BatchingConfig) -> BatchingRun:
    """One timed block of one arm: `config.steps` optimiser steps after two warm-up steps."""
    preset, max_length, batch_size = config.preset, config.max_length, config.batch_size
    tokenizer = build_protein_tokenizer()
    max_tokens = batch_size * max_length if arm == "tokens" else 0
    counter = _TokenCounter(warmup=2)
    with tempfile.TemporaryDirectory() as tmp:
        config = PretrainConfig(
            output_dir=tmp,
            model=ModelConfig(preset=preset),
            data=DataConfig(max_length=max_length, max_tokens=max_tokens),
            train=TrainConfig(
                max_steps=config.steps + counter.warmup,
                batch_size=batch_size if arm == "rows" else 4 * batch_size,  # tokens: rows only capped
                save_steps=10**9,
                precision=config.precision,
                warmup_steps=0,
            ),
        )
        set_seed(0)
        model = build_encoder(preset, tokenizer)
        trainer = build_trainer(config, model, tokenizer, sequence_dataset(records, max_length))
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(counter)
        trainer.train()
        padding = _padding(trainer, 50)
    return BatchingRun(arm, len(counter.times), sum(counter.useful) / sum(counter.times), padding)


def batching_report(config: BatchingConfig, output: str | Path | None = None) -> str:
    """Alternate the two arms `config.repeats` times; return a markdown table (and write the runs, their
    paired ratios and the machine as JSON to `output`)."""
    batch_size, max_length, repeats = config.batch_size, config.max_length, config.repeats
    records = [r for _, r in zip(range(config.proteins), iter_fasta(SAMPLE_FASTA), strict=False)]
    runs = [batching_run(records, arm, config) for _ in range(repeats) for arm in ("rows", "tokens")]
    ratios = [
        b.useful_tokens_per_s / a.useful_tokens_per_s for a, b in zip(runs[::2], runs[1::2], strict=True)
    ]
    machine = machine_and_libraries("cpu")
    lines = [
        f"| arm | batch | useful tokens/s (median of {repeats}) | padding |",
        "|---|---|---|---|",
    ]
    for arm, batch in (("rows", f"{batch_size} proteins"), ("tokens", f"{batch_size * max_length} tokens")):
        mine = [r for r in runs if r.arm == arm]
        lines.append(
            f"| {arm} | {batch} | {statistics.median(r.useful_tokens_per_s for r in mine):.0f} | "
            f"{statistics.median(r.padding_fraction for r in mine):.1%} |"
        )
    lines += ["", f"tokens / rows, paired by repeat: {', '.join(f'{r:.2f}' for r in ratios)}"]
    if output:
        write_json(output, {"runs": [asdict(r) for r in runs], "ratios": ratios, "machine": machine})
    return "\n".join(lines)
