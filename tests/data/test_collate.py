from __future__ import annotations

import pytest
import torch

from seqstruct.data.collate import (
    IGNORE_INDEX,
    MaskedLMCollator,
    TokenBudgetBatchSampler,
    mask_tokens,
    pad_collate,
    random_crop,
    token_budget_batches,
)
from seqstruct.data.tokenizers import build_protein_tokenizer, residue_token_ids
from tests.helpers import sample_records


def test_masking_statistics_80_10_10() -> None:
    tokenizer = build_protein_tokenizer()
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 24, (64, 2048), generator=generator)  # ~20k selected: 1% is over 4 sigma
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True
    replacements = torch.tensor(residue_token_ids(tokenizer))
    masked, labels = mask_tokens(ids, special, tokenizer.mask_token_id, replacements, generator=generator)

    selected = labels != IGNORE_INDEX
    n_selected = int(selected.sum())
    assert abs(n_selected / int((~special).sum()) - 0.15) < 0.005
    assert not selected[special].any()
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(masked[~selected], ids[~selected])

    as_mask = selected & (masked == tokenizer.mask_token_id)
    changed = selected & (masked != ids) & ~as_mask
    kept = selected & (masked == ids)
    assert abs(int(as_mask.sum()) / n_selected - 0.8) < 0.01
    # A random replacement equals the original 1 time in 20, so it counts as kept then.
    assert abs(int(changed.sum()) / n_selected - 0.1 * 19 / 20) < 0.01
    assert abs(int(kept.sum()) / n_selected - (0.1 + 0.1 / 20)) < 0.01
    assert set(masked[changed].tolist()) <= set(replacements.tolist())


def test_collator_crops_pads_and_never_masks_specials() -> None:
    tokenizer = build_protein_tokenizer()
    torch.manual_seed(0)
    collator = MaskedLMCollator(tokenizer, max_length=32)
    batch = collator([{"sequence": "ACDEFGHIKL" * 20}, {"sequence": "MKT"}])
    assert batch["input_ids"].shape == (2, 32)
    assert batch["attention_mask"][1].tolist() == [1] * 5 + [0] * 27
    assert (
        batch["input_ids"][0, 0] == tokenizer.cls_token_id
        and batch["input_ids"][0, -1] == tokenizer.eos_token_id
    )
    for row in range(2):
        specials_and_pad = (batch["attention_mask"][row] == 0).clone()
        specials_and_pad[0] = True
        specials_and_pad[int(batch["attention_mask"][row].sum()) - 1] = True
        assert (batch["labels"][row][specials_and_pad] == IGNORE_INDEX).all()


def test_each_example_is_cropped_and_masked_alike_in_any_batch() -> None:
    """Crops and masks follow (seed, epoch, id): an example's row is the same alone, in another batch or
    padded to another length (so DDP ranks at batch b mask as one process at N·b), and changes by epoch."""
    collator = MaskedLMCollator(build_protein_tokenizer(), max_length=24, seed=3)
    records = sample_records(6)
    examples = [{"id": r.id, "sequence": r.sequence} for r in records]

    def rows(batch: dict) -> list[tuple[list[int], list[int]]]:
        keep = batch["attention_mask"].bool()
        return [
            (batch["input_ids"][i][keep[i]].tolist(), batch["labels"][i][keep[i]].tolist())
            for i in range(len(keep))
        ]

    whole = rows(collator(examples))
    assert rows(collator(examples[:2])) + rows(collator(examples[2:])) == whole
    assert rows(collator([examples[4], {"id": "short", "sequence": "MKT"}]))[0] == whole[4]
    collator.epoch = 1
    assert rows(collator(examples)) != whole


def test_random_crop_is_a_window_and_varies() -> None:
    sequence = "".join(chr(ord("A") + i % 26) for i in range(300))
    generator = torch.Generator().manual_seed(1)
    crops = {random_crop(sequence, 50, generator) for _ in range(20)}
    assert all(len(c) == 50 and c in sequence for c in crops)
    assert len(crops) > 1
    assert random_crop("MKT", 50) == "MKT"


def test_premasked_examples_are_only_padded() -> None:
    tokenizer = build_protein_tokenizer()
    collator = MaskedLMCollator(tokenizer, max_length=32)
    batch = collator(
        [{"input_ids": [0, 5, 2], "labels": [-100, 6, -100]}, {"input_ids": [0, 2], "labels": [-100, -100]}]
    )
    assert batch["input_ids"].tolist() == [[0, 5, 2], [0, 2, tokenizer.pad_token_id]]
    assert batch["labels"].tolist() == [[-100, 6, -100], [-100, -100, -100]]
    assert pad_collate([{"input_ids": [0, 2]}], 1)["attention_mask"].tolist() == [[1, 1]]


def test_token_budget_batches_respect_budget_and_cover_everything() -> None:
    lengths = [5, 100, 30, 31, 2, 7, 64, 64, 300]
    batches = token_budget_batches(lengths, max_tokens=128, max_batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 128
    assert batches[0] == [8]  # the over-long protein goes alone, first (longest first)


def _sample_lengths(max_length: int) -> list[int]:
    return [min(len(r.sequence) + 2, max_length) for r in sample_records(2000)]


def test_token_budget_sampler_covers_each_protein_once_within_budget() -> None:
    lengths = _sample_lengths(256)
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=2048, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) * max(lengths[i] for i in b) <= 2048 for b in batches)
    # Lengths sorted over the whole epoch: padding well under the 5% the GPU recipe aims at.
    assert sampler.padding()["padding_fraction"] < 0.05


def test_token_budget_sampler_order_is_a_function_of_seed_and_epoch() -> None:
    lengths = _sample_lengths(256)
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=2048, seed=3)
    first = sampler.batches()
    sampler.set_epoch(1)
    second = sampler.batches()
    assert len(first) == len(second)  # the Trainer's epoch arithmetic (and exact resume) needs this
    assert first != second
    assert {frozenset(b) for b in first} != {frozenset(b) for b in second}  # ties share batches anew
    again = TokenBudgetBatchSampler(lengths, max_tokens=2048, seed=3)
    again.set_epoch(1)
    torch.manual_seed(123)  # the global RNG plays no part
    assert again.batches() == second


def test_token_budget_sampler_caps_rows_and_refuses_a_budget_below_the_longest() -> None:
    lengths = [10] * 50
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=1000, max_batch_size=8)
    assert max(len(b) for b in sampler) == 8
    with pytest.raises(ValueError, match="below the longest example"):
        TokenBudgetBatchSampler([10, 300], max_tokens=256)
