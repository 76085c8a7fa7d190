"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

# The Triton FAVOR+ kernels (tests/attention/test_kernels.py) run under Triton's interpreter where there
# is no GPU. Triton reads this once, when it is first imported, and transformers imports it (through
# torch._dynamo) long before that test module loads, so it is set here, before anything else.
if os.environ.get("SEQSTRUCT_TEST_DEVICE", "cpu") == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest

from seqstruct.data.fasta import write_fasta
from seqstruct.evaluation.methods import model_path
from tests.helpers import sample_records, tiny_bert_config


@pytest.fixture(scope="session")
def protein_fasta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 real proteins (cut to 150 residues so tiny runs stay fast) as a FASTA file."""
    path = tmp_path_factory.mktemp("data") / "proteins.fasta"
    write_fasta(sample_records(120, max_residues=150), path)
    return path


@pytest.fixture(scope="session")
def protein_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny seeded protein encoder (`tiny`, masked-LM head) with the protein tokenizer. Shared: tests
    read it and write their outputs elsewhere."""
    import torch

    from seqstruct.data.tokenizers import build_protein_tokenizer
    from seqstruct.models.encoders import build_encoder
    from seqstruct.models.io import save_model_dir

    directory = tmp_path_factory.mktemp("tiny-protein")
    tokenizer = build_protein_tokenizer()
    torch.manual_seed(0)
    save_model_dir(build_encoder("tiny", tokenizer), tokenizer, directory)
    return directory


@pytest.fixture(scope="session")
def text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised BERT (hidden size 32) with all-MiniLM-L6-v2's tokenizer."""
    from transformers import AutoTokenizer, BertModel

    directory = tmp_path_factory.mktemp("tiny-text")
    tokenizer = AutoTokenizer.from_pretrained(model_path("minilm"))
    config = tiny_bert_config(tokenizer)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
