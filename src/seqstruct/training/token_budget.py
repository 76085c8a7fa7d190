"""The masked-LM Trainer: token-budget batches, and a step that is the same under any number of processes.

`MaskedLMTrainer` is the Trainer whose training data loader draws its batches from a
`TokenBudgetBatchSampler` (seqstruct.data.collate) instead of a fixed row count when `data.max_tokens`
asks for one. Without one, `torchrun --nproc_per_node N` at batch b trains as one process at batch N·b:
the length-grouped order is drawn for the global batch (accelerate then hands consecutive per-rank
batches of it to the ranks, so the ranks' batches joined are the one process's), the collator's crops
and masks are per example, and the loss is the mean over the global batch's masked tokens.
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
from seqstruct.data.collate import IGNORE_INDEX, TokenBudgetBatchSampler
from seqstruct.models import hooks

logger = logging.getLogger(__name__)

if problems := hooks.trainer_contract_problems():  # named here rather than as a wrong batch order later
    raise RuntimeError("MaskedLMTrainer does not fit this transformers: " + "; ".join(problems))


class EpochSeededLengthSampler(Sampler[int]):
    """transformers' LengthGroupedSampler with a generator seeded by (seed, epoch) before each pass; the
    Trainer calls `set_epoch` at every epoch's start, a resumed run included.

    `global_batch` (rows of one optimiser step over all processes) replaces the sampler's per-process
    batch size: its mega-batches (up to 50 batches, or a quarter of the data, sorted by length inside)
    then hold the same indices in the same order whatever the number of processes, so N ranks at batch b
    draw one process's order at N·b (accelerate deals its consecutive b-row batches out to the ranks).
    """

    def __init__(self, sampler: LengthGroupedSampler, seed: int, global_batch: int) -> None:
        self.sampler, self.seed, self.epoch = sampler, seed, 0
        sampler.batch_size = global_batch

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
        # The masked-LM heads trained here (ESM, BERT) average over their batch's masked tokens and ignore
        # `num_items_in_batch`; a forward that takes **kwargs (BERT's) would otherwise make the Trainer skip
        # dividing by the accumulation steps and multiply by the world size, for a loss that was never
        # divided by the global count. `compute_loss` makes the DDP loss the global token mean instead.
        self.model_accepts_loss_kwargs = False

    def _get_train_sampler(self, train_dataset: Dataset | None = None) -> Sampler | None:
        """Length-grouped batches whose order is drawn from (data_seed, epoch), not from the global RNG:
        the Trainer restores the global RNG of a checkpoint taken mid-epoch, after the epoch's order was
        drawn, so a run resumed in a later epoch would otherwise see another order than the
        uninterrupted run (transformers' LengthGroupedSampler draws with torch.randperm)."""
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            global_batch = sampler.batch_size * self.args.world_size  # per process x accumulation x ranks
            return EpochSeededLengthSampler(sampler, seed, global_batch)
        return sampler

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """The model's loss (the mean over this batch's masked tokens); in training under DDP, rescaled to
        this rank's share of the mean over every rank's masked tokens (see `global_token_share`)."""
        labels = inputs.get("labels")
        loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        if model.training and self.args.world_size > 1 and labels is not None:
            count = (labels != IGNORE_INDEX).sum()
            total = self.accelerator.gather(count[None]).sum()
            loss = global_token_share(loss, count, total, self.args.world_size)
        return (loss, outputs) if return_outputs else loss

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


def global_token_share(
    local_mean: torch.Tensor, count: torch.Tensor, total: torch.Tensor, world_size: int
) -> torch.Tensor:
    """This rank's loss such that DDP's gradient average is the gradient of the global token mean.

    local_mean: the mean over this rank's `count` masked tokens; total: masked tokens over all ranks.
    DDP averages gradients over the ranks, so each rank contributes world_size · (its token sum) / total:
    averaged, Σ_ranks sums / total, what one process computes over the joined batch. The plain local mean
    would weigh a rank's tokens by 1 / its own count, unequal when ranks mask unequally many. A rank
    without masked tokens (its mean is 0/0) contributes 0.
    """
    present = count > 0
    share = count * world_size / total.clamp_min(1)
    return torch.where(present, local_mean, torch.zeros_like(local_mean)) * share


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
