"""Fine-tuning a sequence classifier on a task's train split with the HF Trainer: an encoder with a new
head, or a model built from scratch (the LSTM of `lstm:DIR`), early stopping on valid, resumable."""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from seqstruct.evaluation.tasks import Classification, Labelled

if TYPE_CHECKING:
    from seqstruct.evaluation.methods import MethodOptions

logger = logging.getLogger(__name__)


def epochs_for(rows: int, batch_size: int, epochs: float, min_steps: int) -> float:
    """Passes over `rows` training rows: `epochs`, or more where that would be fewer than `min_steps`
    optimizer steps. At 1% of a pool an epoch is a handful of steps, and a model trained from scratch
    would stop before it learned anything; early stopping still ends it when valid stops improving."""
    if min_steps <= 0 or rows <= 0:
        return epochs
    steps_per_epoch = math.ceil(rows / batch_size)
    return max(epochs, float(math.ceil(min_steps / steps_per_epoch)))


def finetune(
    model_dir: Path,
    problem: Classification,
    seed: int,
    options: MethodOptions,
    max_length: Any,
    build: Callable[[int, str], Any] | None = None,
    work_dir: Path | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train a sequence classifier on problem.train with the HF Trainer, validate on problem.valid (loss),
    stop early after `patience` validations without improvement, and keep the best checkpoint. Returns
    ({test split: probabilities [n, C]}, what training did).

    The classifier is `AutoModelForSequenceClassification` from `model_dir`, or build(num_labels,
    problem_type) (a model from scratch, such as the LSTM); either way it reads `model_dir`'s tokenizer,
    max_length(tokenizer, finetune=True) tokens per input. Checkpoints go to work_dir/checkpoints, and a
    fit that finds some there resumes from the last; they are removed once the scores exist (what is kept
    are the scores). Without work_dir they live in a temporary directory.
    """
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        EarlyStoppingCallback,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from seqstruct.models.encoders import keep_module_weight_names
    from seqstruct.training.arguments import finetune_arguments
    from seqstruct.training.run import resumable_checkpoint

    set_seed(seed)  # the new head's (or the whole model's) initialisation
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    length = max_length(tokenizer, True)
    problem_type = "multi_label_classification" if problem.multilabel else "single_label_classification"
    if build is None:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, num_labels=len(problem.classes), problem_type=problem_type
        )
    else:
        model = build(len(problem.classes), problem_type)
    keep_module_weight_names(model)  # checkpoints reloaded by load_best_model_at_end keep their names

    def dataset(part: Labelled) -> Dataset:
        labels = part.targets.astype(np.float32) if problem.multilabel else part.targets
        if length is not None:  # truncation is said, as `encode` says it
            full = [len(ids) for ids in tokenizer(list(part.texts), add_special_tokens=True)["input_ids"]]
            over = sum(n > length for n in full)
            if over:
                logger.warning("max_length=%d truncated %d of %d fine-tuning inputs", length, over, len(full))
        table = Dataset.from_dict({"text": part.texts, "labels": labels.tolist()})
        return table.map(
            lambda batch: tokenizer(batch["text"], truncation=length is not None, max_length=length),
            batched=True,
            remove_columns=["text"],
        )

    with contextlib.ExitStack() as stack:
        if work_dir is None:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="seqstruct-finetune-")))
        else:
            scratch = Path(work_dir) / "checkpoints"
        resume = resumable_checkpoint(scratch)  # one the Trainer did not finish writing is set aside
        if resume:
            logger.info("resuming the fit from %s", resume)
        arguments = TrainingArguments(
            **finetune_arguments(
                str(scratch),
                seed,
                epochs_for(len(problem.train.texts), options.batch_size, options.epochs, options.min_steps),
                options,
            )
        )
        trainer = Trainer(
            model=model,
            args=arguments,
            train_dataset=dataset(problem.train),
            eval_dataset=dataset(problem.valid),
            data_collator=DataCollatorWithPadding(tokenizer),
            callbacks=[EarlyStoppingCallback(early_stopping_patience=options.patience)],
        )
        trainer.train(resume_from_checkpoint=resume)
        out = {}
        for split, part in problem.tests.items():
            logits = torch.as_tensor(trainer.predict(dataset(part)).predictions).float()  # [n, C]
            out[split] = (torch.sigmoid(logits) if problem.multilabel else logits.softmax(dim=-1)).numpy()
        state = trainer.state
        report = {
            "steps": state.global_step,
            "epochs": state.epoch,
            "best_valid_loss": state.best_metric,
            "best_step": int(state.best_model_checkpoint.rsplit("-", 1)[1])
            if state.best_model_checkpoint
            else None,
            # the step of the last validation: best_step equal to it means valid loss was still falling
            "last_eval_step": max((h["step"] for h in state.log_history if "eval_loss" in h), default=None),
            "max_length": length,
            "resumed_from": Path(resume).name if resume else None,
        }
        if work_dir is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return out, report
