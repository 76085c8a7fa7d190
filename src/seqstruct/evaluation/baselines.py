"""Baselines that need no model: what a sequence's own counts say."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

import numpy as np

STANDARD_RESIDUES = "ACDEFGHIKLMNPQRSTVWY"


def kmer_composition(sequences: Sequence[str], k: int = 2, alphabet: str = STANDARD_RESIDUES) -> np.ndarray:
    """[N, |alphabet|^k] k-mer frequencies of each sequence (counts / number of k-mers), float32.

    k-mers with a letter outside `alphabet` (X, B, ...) are not counted; a sequence shorter than k, or
    with no countable k-mer, gets a row of zeros.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    index = {"".join(kmer): i for i, kmer in enumerate(product(alphabet, repeat=k))}
    out = np.zeros((len(sequences), len(index)), dtype=np.float32)
    for row, sequence in enumerate(sequences):
        hits = [
            index[sequence[i : i + k]] for i in range(len(sequence) - k + 1) if sequence[i : i + k] in index
        ]
        if hits:
            out[row] = np.bincount(hits, minlength=len(index)) / len(hits)
    return out
