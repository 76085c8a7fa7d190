"""Token-budget batches in the Trainer: no compute on padding, a fixed number of tokens a step.

`MaskedLMTrainer` is the Trainer whose training data loader draws its batches from a
`TokenBudgetBatchSampler` (seqstruct.data.collate) instead of a fixed row count; `data.max_tokens` asks
for one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import partial
from typing import Any

import torch
from datasets import Dataset
from torch.utils.data import DataLoader, Sampler
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import seed_worker

from seqstruct.config import PretrainConfig
from seqstruct.data.collate import TokenBudgetBatchSampler
from seqstruct.models import hooks

logger = logging.getLogger(__name__)

if problems := hooks.trainer_contract_problems():  # named here rather than as a wrong batch order later
    raise RuntimeError("MaskedLMTrainer does not fit this transformers: " + "; ".join(problems))


class EpochSeededLengthSampler(Sampler[int]):
    """transformers' LengthGroupedSampler with a generator seeded by (seed, epoch) before each pass; the
    Trainer calls `set_epoch` at every epoch's start, a resumed run included."""

    def __init__(self, sampler: LengthGroupedSampler, seed: int) -> None:
        self.sampler, self.seed, self.epoch = sampler, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[int]:
        self.sampler.generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(self.sampler)


class MaskedLMTrainer(Trainer):
    """The Trainer, drawing its training batches from a `TokenBudgetBatchSampler` when one is given.

    Everything else (accelerate's preparation for DDP, resume's skipping of seen batches, the per-epoch
    `set_epoch` the sampler's order depends on) is the Trainer's own, applied to this data loader.
    """

    def __init__(
        self, *args: Any, batch_sampler: TokenBudgetBatchSampler | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.batch_sampler = batch_sampler

    def _get_train_sampler(self, train_dataset: Dataset | None = None) -> Sampler | None:
        """Length-grouped batches whose order is drawn from (data_seed, epoch), not from the global RNG:
        the Trainer restores the global RNG of a checkpoint taken mid-epoch, after the epoch's order was
        drawn, so a run resumed in a later epoch would otherwise see another order than the
        uninterrupted run (transformers' LengthGroupedSampler draws with torch.randperm)."""
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return EpochSeededLengthSampler(sampler, seed)
        return sampler

    def get_train_dataloader(self) -> DataLoader:
        if self.batch_sampler is None:
            return super().get_train_dataloader()
        workers = self.args.dataloader_num_workers
        loader = DataLoader(
            self.train_dataset,
            batch_sampler=self.batch_sampler,
            collate_fn=self.data_collator,
            num_workers=workers,
            pin_memory=self.args.dataloader_pin_memory,
            persistent_workers=self.args.dataloader_persistent_workers and workers > 0,
            prefetch_factor=self.args.dataloader_prefetch_factor if workers > 0 else None,
            worker_init_fn=partial(seed_worker, num_workers=workers, rank=self.args.process_index),
        )
        return self.accelerator.prepare(loader)


def token_budget_sampler(config: PretrainConfig, train_set: Dataset) -> TokenBudgetBatchSampler | None:
    """The token-budget batch sampler `data.max_tokens` asks for (None at 0), its padding logged."""
    if not config.data.max_tokens:
        return None
    sampler = TokenBudgetBatchSampler(
        train_set["length"], config.data.max_tokens, config.train.seed, config.train.batch_size
    )
    padding = sampler.padding()
    logger.info(
        "token-budget batches: %d a epoch, %.0f tokens each on average (%.2f%% padding)",
        len(sampler),
        padding["mean_batch_tokens"],
        100 * padding["padding_fraction"],
    )
    return sampler


def check_batching(config: PretrainConfig) -> None:
    """Refuse batching settings that cannot work, before any data is read."""
    if config.data.max_tokens < 0:
        raise ValueError(
            f"data.max_tokens must be >= 0 (0: batch_size proteins a batch); got {config.data.max_tokens}"
        )
    if config.data.max_tokens and config.data.max_tokens < config.data.max_length:
        raise ValueError(
            f"data.max_tokens={config.data.max_tokens} cannot hold one example of data.max_length="
            f"{config.data.max_length} tokens"
        )
    if config.data.max_tokens and config.structure.weight > 0:
        raise ValueError(
            "data.max_tokens is for masked-LM alone: structure-inducing batches add graph neighbours to every "
            "batch, so set data.max_tokens=0 (batch_size proteins a batch) with structure.weight > 0"
        )
