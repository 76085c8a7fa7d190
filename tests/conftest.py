"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from seqstruct.data.fasta import write_fasta
from tests.helpers import sample_records


@pytest.fixture(scope="session")
def protein_fasta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 real proteins (cut to 150 residues so tiny runs stay fast) as a FASTA file."""
    path = tmp_path_factory.mktemp("data") / "proteins.fasta"
    write_fasta(sample_records(120, max_residues=150), path)
    return path
