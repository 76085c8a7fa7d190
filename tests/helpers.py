"""Test helpers: small real protein sets cut from the embedded Swiss-Prot sample, tiny run settings, the
repository's scripts/ loaded as modules."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from types import ModuleType
from typing import Any

from seqstruct.data.fasta import FastaRecord, iter_fasta
from seqstruct.data.sources.embedded import SAMPLE_FASTA


def sample_records(n: int, max_residues: int | None = None) -> list[FastaRecord]:
    """The first `n` proteins of the embedded sample, optionally cut to `max_residues`."""
    records = list(itertools.islice(iter_fasta(SAMPLE_FASTA), n))
    if max_residues is not None:
        records = [FastaRecord(r.id, r.description, r.sequence[:max_residues]) for r in records]
    return records


def tiny_overrides(fasta: Path, output_dir: Path, **extra: object) -> list[str]:
    """key=value overrides for a seconds-long `tiny` pretraining run."""
    values: dict[str, object] = {
        "output_dir": output_dir,
        "data.fasta": fasta,
        "model.preset": "tiny",
        "data.max_length": 64,
        "data.eval_fraction": 0.1,
        "train.max_steps": 8,
        "train.batch_size": 8,
        "train.learning_rate": 3e-3,
        "train.warmup_steps": 2,
        "train.logging_steps": 2,
        "train.eval_steps": 4,
        "train.save_steps": 4,
        "train.precision": "fp32",
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def tiny_bert_config(tokenizer: Any) -> Any:
    """A 2-layer, 32-wide BERT config over `tokenizer`'s vocabulary (MiniLM's, in the text tests)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )


def load_script(name: str) -> ModuleType:
    """scripts/NAME.py as a module (scripts/ is not a package), so a test calls its functions directly."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
