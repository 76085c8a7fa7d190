"""Batch construction: random crops, MLM masking, padding, and token-budget batches (inference and training)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler
from transformers import PreTrainedTokenizerBase

from seqstruct.data.tokenizers import is_protein_tokenizer, replacement_token_ids

IGNORE_INDEX = -100  # label of positions that carry no loss (the convention of transformers' losses)


def random_crop(sequence: str, max_residues: int, generator: torch.Generator | None = None) -> str:
    """A uniformly placed window of at most `max_residues` residues; short sequences pass unchanged."""
    excess = len(sequence) - max_residues
    if excess <= 0:
        return sequence
    start = int(torch.randint(0, excess + 1, (1,), generator=generator))
    return sequence[start : start + max_residues]


def mask_tokens(
    input_ids: torch.Tensor,
    special_mask: torch.Tensor,
    mask_token_id: int,
    replacement_ids: torch.Tensor,
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: select `mlm_probability` of non-special positions; of those, replace
    `mask_replace_prob` with <mask>, `random_replace_prob` with a random residue, keep the rest.

    input_ids, special_mask: (B, L); replacement_ids: (R,) residue ids random replacements draw from.
    Returns (masked input_ids, labels) with labels = IGNORE_INDEX outside the selected positions.
    """
    labels = input_ids.clone()
    probs = torch.full(input_ids.shape, mlm_probability)
    probs.masked_fill_(special_mask, 0.0)
    selected = torch.bernoulli(probs, generator=generator).bool()  # (B, L)
    labels[~selected] = IGNORE_INDEX
    draw = torch.rand(input_ids.shape, generator=generator)  # one uniform per position picks its fate
    to_mask = selected & (draw < mask_replace_prob)
    to_random = selected & (draw >= mask_replace_prob) & (draw < mask_replace_prob + random_replace_prob)
    masked = input_ids.clone()
    masked[to_mask] = mask_token_id
    picks = torch.randint(len(replacement_ids), input_ids.shape, generator=generator)
    masked[to_random] = replacement_ids[picks[to_random]]
    return masked, labels


@dataclass
class MaskedLMCollator:
    """Collate `{"id": str, "sequence": str}` examples into a masked-LM batch: crop, tokenize, pad, mask.

    Each example is cropped and masked by its own generator, seeded by (seed, epoch, its id), unless a
    generator is given (then shared by all rows in turn). Its crop and mask are then a function of the
    example alone: not of how many batches were collated before (accelerate's data loader collates one
    batch ahead, so the global RNG state a checkpoint saves has already moved past the next batch, and a
    resumed run drawing from it would mask differently), and not of which other examples share its batch
    (so `torchrun` ranks at batch b mask exactly as one process at batch N·b, whose batch is theirs
    joined). The trainer sets `epoch`, so a protein is cropped and masked anew each epoch. Examples that
    already carry `labels` are only padded.
    """

    tokenizer: PreTrainedTokenizerBase
    max_length: int  # tokens including <cls> and <eos>
    mlm_probability: float = 0.15
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1
    seed: int = 0
    generator: torch.Generator | None = None
    epoch: int = 0
    _replacement_ids: torch.Tensor = field(init=False, repr=False)
    _protein: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_length < 3:
            raise ValueError(
                f"max_length must leave room for <cls>, one residue and <eos>; got {self.max_length}"
            )
        # Random replacements draw standard residues only (or non-special word pieces for text): a random
        # <pad> or <cls> mid-protein teaches nothing.
        self._replacement_ids = torch.tensor(replacement_token_ids(self.tokenizer))
        self._protein = is_protein_tokenizer(self.tokenizer)

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if "labels" in examples[0]:
            # Held-out examples arrive pre-masked (see data.pretraining.premask): pad them, mask nothing.
            return pad_collate(examples, self.tokenizer.pad_token_id)
        batch = self.crop_and_mask(examples, [self.example_generator(ex) for ex in examples])
        batch.pop("special_tokens_mask")
        return batch

    def crop_and_mask(
        self, examples: Sequence[dict[str, Any]], generators: Sequence[torch.Generator]
    ) -> dict[str, torch.Tensor]:
        """Crop, tokenize, pad and mask, row i drawing from `generators[i]` (its crop, then its mask, over
        its own tokens only, so padding to the batch's longest row changes no draw); the batch keeps
        `special_tokens_mask` (B, L) for the caller."""
        if self._protein:
            crops = [
                random_crop(ex["sequence"], self.max_length - 2, g)
                for ex, g in zip(examples, generators, strict=True)
            ]
        else:  # text: word pieces are not characters, so the tokenizer truncates (keeping [SEP])
            crops = [ex["sequence"] for ex in examples]
        batch = self.tokenizer(
            crops,
            padding=True,
            truncation=not self._protein,
            max_length=None if self._protein else self.max_length,
            return_tensors="pt",
            return_special_tokens_mask=True,
            return_token_type_ids=False,
        )
        special = batch["special_tokens_mask"].bool()
        input_ids = batch["input_ids"].clone()
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        for row, generator in enumerate(generators):
            tokens = batch["attention_mask"][row].bool()  # [L] this row's tokens, wherever padding goes
            masked, row_labels = mask_tokens(
                batch["input_ids"][row, tokens][None],  # [1, n]
                special[row, tokens][None],
                self.tokenizer.mask_token_id,
                self._replacement_ids,
                self.mlm_probability,
                self.mask_replace_prob,
                self.random_replace_prob,
                generator,
            )
            input_ids[row, tokens], labels[row, tokens] = masked[0], row_labels[0]
        batch["input_ids"], batch["labels"] = input_ids, labels
        batch["special_tokens_mask"] = special
        return dict(batch)

    def derived_seed(self, *parts: object) -> int:
        """A 63-bit seed determined by (seed, epoch, parts): the same in every process, whatever the batch."""
        key = "\x1f".join(str(part) for part in (self.seed, self.epoch, *parts))
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") & (2**63 - 1)

    def example_generator(self, example: dict[str, Any], role: str = "") -> torch.Generator:
        """The generator of one row: the shared `generator` when given, else one seeded by (seed, epoch,
        role, the example's id); `role` tells apart rows drawn for one example (a graph anchor's extras)."""
        if self.generator is not None:
            return self.generator
        key = example.get("id", example["sequence"])
        return torch.Generator().manual_seed(self.derived_seed(role, key))


def pad_collate(features: Sequence[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad pre-tokenized `input_ids` (and `labels`, with IGNORE_INDEX) into a batch."""
    longest = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), longest), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(features), longest), dtype=torch.long)
    labels = torch.full((len(features), longest), IGNORE_INDEX, dtype=torch.long)
    for row, feature in enumerate(features):
        n = len(feature["input_ids"])
        ids[row, :n] = torch.as_tensor(feature["input_ids"])
        attention[row, :n] = 1
        if "labels" in feature:
            labels[row, :n] = torch.as_tensor(feature["labels"])
    batch = {"input_ids": ids, "attention_mask": attention}
    if "labels" in features[0]:
        batch["labels"] = labels
    return batch


def token_budget_batches(lengths: Sequence[int], max_tokens: int, max_batch_size: int) -> list[list[int]]:
    """Group indices longest-first into batches whose padded size (rows x longest) stays within
    `max_tokens` and whose row count stays within `max_batch_size`; an over-long item gets a batch alone.

    Sorting by length keeps padding small, as in ESM's `get_batch_indices`.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = lengths[current[0]] if current else lengths[index]
        if current and (len(current) + 1 > max_batch_size or (len(current) + 1) * longest > max_tokens):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Training batches of proteins of (nearly) equal length under a token budget: ESM's batching, for the
    Trainer (`DataLoader(batch_sampler=...)`).

    Each epoch the indices are permuted with a generator seeded by (seed, epoch), stably sorted longest
    first and cut into batches by `token_budget_batches`, and the batches are visited in a seeded random
    order. Sorting the whole epoch keeps padding near zero (transformers' `BatchRebalanceSampler`, which
    sorts only within one optimiser step, pads 6-25% of tokens at ESM-2's step sizes on Swiss-Prot), and
    the permutation before the sort changes which same-length proteins share a batch from epoch to epoch.
    The batch sizes depend only on the sorted lengths, so every epoch has the same number of batches (the
    Trainer's epoch arithmetic, and so exact resume, needs that), and the order is a function of
    (seed, epoch) alone, never of the global RNG: a run resumed in any epoch draws the same batches.

    lengths: tokens per example after cropping (the dataset's `length` column).
    """

    def __init__(
        self, lengths: Sequence[int], max_tokens: int, seed: int = 0, max_batch_size: int = 0
    ) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be positive; got {max_tokens}")
        longest = max(lengths, default=0)
        if longest > max_tokens:
            raise ValueError(
                f"max_tokens={max_tokens} is below the longest example ({longest} tokens); raise it to at "
                "least data.max_length"
            )
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.max_tokens = max_tokens
        self.max_batch_size = max_batch_size or len(self.lengths) or 1
        self.seed = seed
        self.epoch = 0
        # Batch sizes in sorted order: the same every epoch, since they depend on the sorted lengths only.
        sorted_lengths = np.sort(self.lengths)[::-1].tolist()
        self._sizes = [len(b) for b in token_budget_batches(sorted_lengths, max_tokens, self.max_batch_size)]

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer (through accelerate) before each epoch's batches are drawn."""
        self.epoch = epoch

    def _generator(self, salt: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, salt])

    def batches(self) -> list[list[int]]:
        """This epoch's batches, in the order they are visited."""
        permuted = self._generator(0).permutation(len(self.lengths))
        order = permuted[np.argsort(-self.lengths[permuted], kind="stable")]  # longest first, ties shuffled
        bounds = np.cumsum([0, *self._sizes])
        batches = [order[a:b].tolist() for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        return [batches[i] for i in self._generator(1).permutation(len(batches))]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()

    def __len__(self) -> int:
        return len(self._sizes)

    def padding(self) -> dict[str, float]:
        """Padding of this epoch's batches: the share of padded tokens among rows x longest, and the mean
        and largest padded tokens per batch (the same every epoch, up to ties)."""
        padded = [len(b) * int(self.lengths[b].max()) for b in self.batches()]
        total = float(sum(padded))
        return {
            "padding_fraction": 1.0 - float(self.lengths.sum()) / total if total else 0.0,
            "mean_batch_tokens": total / len(padded) if padded else 0.0,
            "max_batch_tokens": float(max(padded, default=0)),
        }
