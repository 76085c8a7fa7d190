"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from seqstruct.data.fasta import write_fasta
from seqstruct.evaluation.methods import model_path
from tests.helpers import sample_records


@pytest.fixture(scope="session")
def protein_fasta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 real proteins (cut to 150 residues so tiny runs stay fast) as a FASTA file."""
    path = tmp_path_factory.mktemp("data") / "proteins.fasta"
    write_fasta(sample_records(120, max_residues=150), path)
    return path


@pytest.fixture(scope="session")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised BERT (hidden size 32) with all-MiniLM-L6-v2's tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    directory = tmp_path_factory.mktemp("tiny-text")
    tokenizer = AutoTokenizer.from_pretrained(model_path("minilm"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
