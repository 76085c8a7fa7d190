from __future__ import annotations

from seqstruct.data.collate import IGNORE_INDEX
from seqstruct.data.pretraining import heldout_split, premask, protein_dataset
from seqstruct.data.tokenizers import build_protein_tokenizer
from tests.helpers import sample_records


def test_heldout_split_is_seeded_and_disjoint() -> None:
    dataset = protein_dataset(sample_records(100), max_length=64)
    train, heldout = heldout_split(dataset, fraction=0.1, cap=1000, seed=3)
    again = heldout_split(dataset, fraction=0.1, cap=1000, seed=3)[1]
    other = heldout_split(dataset, fraction=0.1, cap=1000, seed=4)[1]
    assert len(heldout) == 10 and len(train) == 90
    assert set(train["id"]).isdisjoint(heldout["id"])
    assert heldout["id"] == again["id"] and heldout["id"] != other["id"]
    assert max(dataset["length"]) == 64


def test_premask_is_deterministic_and_masks_every_selected_position() -> None:
    tokenizer = build_protein_tokenizer()
    dataset = protein_dataset(sample_records(20), max_length=64)
    first = premask(dataset, tokenizer, 64, 0.15, seed=0)
    second = premask(dataset, tokenizer, 64, 0.15, seed=0)
    assert first["input_ids"] == second["input_ids"] and first["labels"] == second["labels"]
    n_labels = 0
    for ids, labels in zip(first["input_ids"], first["labels"], strict=True):
        assert len(ids) <= 64
        for token, label in zip(ids, labels, strict=True):
            if label != IGNORE_INDEX:
                assert token == tokenizer.mask_token_id
                n_labels += 1
    assert n_labels > 0
