"""Budgets of a training run: tokens per batch (token-budget batches) and minutes per run (a clean stop).

A GPU lent for a fixed number of minutes is used well when (a) no compute goes to padding and (b) the run
ends by itself just before the minutes are spent, with everything saved. (a) is `MaskedLMTrainer` with
`TokenBudgetBatchSampler` (seqstruct.data.collate): the Trainer's own data loader, whose batches come from
the sampler instead of a fixed row count. (b) is `TimeBudgetCallback`: after the optimiser step that
crosses the budget it asks the Trainer to save and stop, so the run then finishes as one that reached
`max_steps` does (final evaluation, model directory, metrics).
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import seed_worker

from seqstruct.data.collate import TokenBudgetBatchSampler

logger = logging.getLogger(__name__)


class TimeBudgetCallback(TrainerCallback):
    """Stop training cleanly once `minutes` of wall-clock time have passed since training began in this
    process (a resumed run gets its own budget). `stopped` says whether the budget ended the run."""

    def __init__(self, minutes: float) -> None:
        if minutes < 0:
            raise ValueError(f"train.max_minutes must be >= 0 (0: no budget); got {minutes}")
        self.seconds = minutes * 60.0
        self.start: float | None = None
        self.stopped = False

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.start = time.monotonic()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not self.seconds or self.start is None or time.monotonic() - self.start < self.seconds:
            return
        if not self.stopped:
            logger.info(
                "train.max_minutes=%g spent at step %d: saving and stopping",
                self.seconds / 60,
                state.global_step,
            )
        self.stopped = True
        control.should_training_stop = True
        control.should_save = True  # a resume point at the last step, so `--resume` goes on from here


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
