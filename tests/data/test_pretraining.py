from __future__ import annotations

from seqstruct.data.collate import IGNORE_INDEX
from seqstruct.data.pretraining import heldout_split, premask, sequence_dataset
from seqstruct.data.tokenizers import build_protein_tokenizer
from tests.helpers import sample_records


def test_heldout_split_is_seeded_and_disjoint() -> None:
    dataset = sequence_dataset(sample_records(100), max_length=64)
    train, heldout = heldout_split(dataset, fraction=0.1, cap=1000, seed=3)
    again = heldout_split(dataset, fraction=0.1, cap=1000, seed=3)[1]
    other = heldout_split(dataset, fraction=0.1, cap=1000, seed=4)[1]
    assert len(heldout) == 10 and len(train) == 90
    assert set(train["id"]).isdisjoint(heldout["id"])
    assert heldout["id"] == again["id"] and heldout["id"] != other["id"]
    assert max(dataset["length"]) == 64


def test_premask_is_deterministic_and_masks_every_selected_position() -> None:
    tokenizer = build_protein_tokenizer()
    dataset = sequence_dataset(sample_records(20), max_length=64)
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


def test_lengths_are_tokens_for_text_and_residues_plus_two_for_proteins() -> None:
    import pytest
    from transformers import AutoTokenizer

    from seqstruct.data.fasta import FastaRecord
    from seqstruct.models.io import resolve_model_path

    records = [FastaRecord("t1", "", "cytoplasmic translation initiation"), FastaRecord("t2", "", "kinase")]
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    text = sequence_dataset(records, max_length=512, kind="text", tokenizer=tokenizer)
    expected = [len(tokenizer(r.sequence)["input_ids"]) for r in records]
    assert text["length"] == expected and expected[0] < len(records[0].sequence)  # tokens, not characters
    assert sequence_dataset(records, max_length=4, kind="text", tokenizer=tokenizer)["length"] == [4, 3]
    assert sequence_dataset(sample_records(3), max_length=64)["length"] == [
        min(len(r.sequence) + 2, 64) for r in sample_records(3)
    ]
    with pytest.raises(ValueError, match="give the tokenizer"):
        sequence_dataset(records, max_length=512, kind="text")
    with pytest.raises(ValueError, match="kind must be one of"):
        sequence_dataset(records, max_length=512, kind="dna")
