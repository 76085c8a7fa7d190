from __future__ import annotations

from transformers import AutoTokenizer

from seqstruct.data import fasta
from seqstruct.data.fasta import PROTEIN_ALPHABET
from seqstruct.data.tokenizers import RESIDUES, STANDARD_RESIDUES, build_protein_tokenizer, residue_token_ids


def test_round_trip_every_residue() -> None:
    tokenizer = build_protein_tokenizer()
    sequence = RESIDUES * 3
    ids = tokenizer(sequence)["input_ids"]
    assert len(ids) == len(sequence) + 2
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == sequence


def test_lowercase_maps_to_uppercase_and_unknown_letters_to_unk() -> None:
    tokenizer = build_protein_tokenizer()
    assert tokenizer("mktay")["input_ids"] == tokenizer("MKTAY")["input_ids"]
    assert tokenizer("MJK")["input_ids"][2] == tokenizer.unk_token_id


def test_special_tokens_and_padding() -> None:
    tokenizer = build_protein_tokenizer()
    assert [
        tokenizer.cls_token,
        tokenizer.eos_token,
        tokenizer.pad_token,
        tokenizer.mask_token,
        tokenizer.unk_token,
    ] == [
        "<cls>",
        "<eos>",
        "<pad>",
        "<mask>",
        "<unk>",
    ]
    batch = tokenizer(["MK", "MKTAY"], padding=True)
    assert batch["input_ids"][0][-3:] == [tokenizer.pad_token_id] * 3
    assert batch["attention_mask"][0] == [1, 1, 1, 1, 0, 0, 0]


def test_truncation_keeps_end_token() -> None:
    tokenizer = build_protein_tokenizer()
    ids = tokenizer("MKTAYIAKQR", truncation=True, max_length=6)["input_ids"]
    assert len(ids) == 6 and ids[-1] == tokenizer.eos_token_id


def test_save_and_load_with_auto_tokenizer(tmp_path) -> None:
    tokenizer = build_protein_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded("MKTAYxbzuo")["input_ids"] == tokenizer("MKTAYxbzuo")["input_ids"]
    assert loaded.mask_token_id == tokenizer.mask_token_id and loaded.pad_token_id == tokenizer.pad_token_id
    assert len(loaded) == len(tokenizer)


def test_residue_ids_are_standard_letters() -> None:
    tokenizer = build_protein_tokenizer()
    ids = residue_token_ids(tokenizer)
    assert tokenizer.convert_ids_to_tokens(ids) == list(STANDARD_RESIDUES)
    assert len(set(ids)) == 20
    # The fasta module's 20 letters, listed in the vocabulary's order (the pool MLM draws from by index).
    assert sorted(STANDARD_RESIDUES) == sorted(fasta.STANDARD_RESIDUES)
    assert STANDARD_RESIDUES == "LAGVSERTIDPKQNFYMHWC"


def test_every_letter_the_fasta_reader_accepts_is_a_token() -> None:
    assert sorted(RESIDUES) == sorted(PROTEIN_ALPHABET) and len(set(RESIDUES)) == len(RESIDUES)
