"""Datasets for masked-LM pretraining: proteins from FASTA, a seeded held-out split, a fixed eval masking."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from seqstruct.data.collate import MaskedLMCollator
from seqstruct.data.fasta import FastaRecord
from seqstruct.data.prepared import KINDS


def sequence_dataset(
    records: Sequence[FastaRecord],
    max_length: int,
    kind: str = "protein",
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> Dataset:
    """Columns: id, sequence, length (tokens after cropping, for length-grouped and token-budget batches).

    A protein is one token a residue plus <cls> and <eos>, so its length is counted without tokenising;
    a text's length is its token count under `tokenizer` (required for kind "text"), which characters
    would overstate several-fold."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    sequences = [r.sequence for r in records]
    if kind == "protein":
        lengths = [len(s) + 2 for s in sequences]
    elif tokenizer is None:
        raise ValueError("a text dataset's lengths are token counts: give the tokenizer")
    else:
        lengths = [len(ids) for ids in tokenizer(sequences, add_special_tokens=True)["input_ids"]]
    return Dataset.from_dict(
        {
            "id": [r.id for r in records],
            "sequence": sequences,
            "length": [min(n, max_length) for n in lengths],
        }
    )


def heldout_split(dataset: Dataset, fraction: float, cap: int, seed: int) -> tuple[Dataset, Dataset]:
    """A seeded random split; the held-out part is `fraction` of the proteins, at most `cap`, at least 1."""
    n = len(dataset)
    n_eval = max(1, min(cap, round(n * fraction)))
    if n_eval >= n:
        raise ValueError(
            f"cannot hold out {n_eval} of {n} proteins and still train; add proteins or lower eval_fraction"
        )
    order = np.random.default_rng(seed).permutation(n)
    return dataset.select(np.sort(order[n_eval:])), dataset.select(np.sort(order[:n_eval]))


def premask(
    dataset: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int, mlm_probability: float, seed: int
) -> Dataset:
    """Crop and mask the held-out proteins once, with a seeded generator, so that every evaluation (and
    every resumed run) scores the same positions.

    Every selected position becomes <mask> (no random or kept tokens): a model then cannot score by copying
    a visible residue, and accuracy measures prediction from context alone.
    """
    collator = MaskedLMCollator(
        tokenizer,
        max_length,
        mlm_probability,
        mask_replace_prob=1.0,
        random_replace_prob=0.0,
        generator=torch.Generator().manual_seed(seed),
    )
    input_ids, labels = [], []
    for example in dataset:
        batch = collator([example])
        input_ids.append(batch["input_ids"][0].tolist())
        labels.append(batch["labels"][0].tolist())
    return Dataset.from_dict({"id": dataset["id"], "input_ids": input_ids, "labels": labels})
