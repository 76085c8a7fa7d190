"""The callbacks every seqstruct Trainer carries: the CSV log, the collator's epoch, a wall-clock budget.

A GPU lent for a fixed number of minutes is used well when the run ends by itself just before the
minutes are spent, with everything saved: `TimeBudgetCallback` asks the Trainer to save and stop after the
optimiser step that crosses the budget, so the run then finishes as one that reached `max_steps` does
(final evaluation, model directory, metrics).
"""

from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path
from typing import Any, Protocol

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.integrations import TensorBoardCallback

from seqstruct.io import atomic_open

logger = logging.getLogger(__name__)


class CsvLogCallback(TrainerCallback):
    """Rewrite the whole log history as CSV on every log event.

    Rewriting (atomically) rather than appending keeps the file consistent with `trainer_state.json` when
    a run resumes from a checkpoint taken before its last log rows.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero:
            return
        columns = sorted({key for row in state.log_history for key in row}, key=lambda k: (k != "step", k))
        with atomic_open(self.path, "w") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(state.log_history)


class EpochAware(Protocol):
    epoch: int  # the training epoch whose batches are being drawn


class CollatorEpochCallback(TrainerCallback):
    """Tell the collator which epoch begins, so that its per-batch crops and masks change every epoch."""

    def __init__(self, collator: EpochAware) -> None:
        self.collator = collator

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # state.epoch is e exactly at a fresh epoch's start and e + k/n when resuming inside epoch e.
        self.collator.epoch = math.floor((state.epoch or 0.0) + 1e-6)


def tensorboard_callback(directory: Path) -> TensorBoardCallback:
    """TensorBoard logging into a fixed `directory`, so that a final evaluation after training (the
    callback reopens its writer) lands there too."""
    callback = TensorBoardCallback()
    callback.logging_dir = str(directory)
    return callback


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
