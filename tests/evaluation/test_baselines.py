"""The k-mer composition baseline against hand counts."""

from __future__ import annotations

import numpy as np
import pytest

from seqstruct.data.fasta import STANDARD_RESIDUES
from seqstruct.evaluation.methods.baselines import kmer_composition


def test_kmer_frequencies_by_hand() -> None:
    vectors = kmer_composition(["ACA", "AXC", "A"], k=2)
    assert vectors.shape == (3, 400) and vectors.dtype == np.float32
    column = {
        a + b: i for i, (a, b) in enumerate((a, b) for a in STANDARD_RESIDUES for b in STANDARD_RESIDUES)
    }
    assert vectors[0, column["AC"]] == pytest.approx(0.5) and vectors[0, column["CA"]] == pytest.approx(0.5)
    assert vectors[0].sum() == pytest.approx(1.0)
    assert not vectors[1].any()  # both 2-mers hold X: nothing countable
    assert not vectors[2].any()  # shorter than k


def test_unigram_composition_and_bad_k() -> None:
    vectors = kmer_composition(["AAC"], k=1)
    assert vectors[0, STANDARD_RESIDUES.index("A")] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="at least 1"):
        kmer_composition(["A"], k=0)
