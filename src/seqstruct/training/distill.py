"""Distillation of a FAVOR+ student from its exact-attention teacher on the HF Trainer: the student
loaded from the teacher's weights, text batches, and the Trainer over `DistillationObjective` (per-layer
hidden-state MSE plus embedding cosine, seqstruct.objectives.distill) in a Run directory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import AutoModel, PreTrainedModel, PreTrainedTokenizerBase, Trainer

from seqstruct.attention.interface import NAME as FAVOR
from seqstruct.attention.interface import FavorRedrawCallback, performerize
from seqstruct.config import DistillConfig
from seqstruct.objectives.distill import DistillationObjective
from seqstruct.training.mlm import training_arguments
from seqstruct.training.run import Run

logger = logging.getLogger(__name__)


class TextCollator:
    """Tokenise a batch of `text` rows: padded to the longest, truncated to `max_length` (ending in [SEP])."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return dict(
            self.tokenizer(
                [row["text"] for row in rows],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
        )


def text_dataset(texts: list[str], tokenizer: PreTrainedTokenizerBase, max_length: int) -> Dataset:
    """Columns: text, length (tokens after truncation, for length-grouped batches)."""
    full = [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]
    cut = sum(n > max_length for n in full)
    if cut:
        logger.info(
            "%d of %d texts are cut to max_length=%d tokens (ending in [SEP])", cut, len(full), max_length
        )
    return Dataset.from_dict({"text": texts, "length": [min(n, max_length) for n in full]})


def load_student(teacher_dir: Path, config: DistillConfig) -> PreTrainedModel:
    """The teacher's weights, switched to FAVOR+ with the configured settings (dropout, frozen word
    embeddings as configured)."""
    dropout = config.model.dropout
    student = AutoModel.from_pretrained(
        teacher_dir,
        attn_implementation="sdpa",
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    if config.model.freeze_embeddings:
        # FAVOR+ changes attention, not the vocabulary: word vectors stay the teacher's, and words seen in
        # a few training batches do not drift away from the unseen ones (half the optimiser work saved).
        student.get_input_embeddings().requires_grad_(False)
    return performerize(student, settings=config.model.favor)


def favor_dict(model: PreTrainedModel) -> dict[str, Any]:
    """The FAVOR+ settings a performerized model carries in its config."""
    return dict(getattr(model.config, FAVOR))


def distill_trainer(
    run: Run,
    objective: DistillationObjective,
    tokenizer: PreTrainedTokenizerBase,
    train_set: Dataset,
    eval_set: Dataset | None,
    max_length: int,
) -> Trainer:
    """The Trainer distilling `objective`'s student: length-grouped text batches, the objective's loss on
    held-out texts as eval_loss, the Run's logs, checkpoints and budget."""
    args = training_arguments(run, evaluate=eval_set is not None)
    args.prediction_loss_only = True  # the objective's eval output is its loss
    return Trainer(
        model=objective,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=TextCollator(tokenizer, max_length),
        processing_class=tokenizer,
        callbacks=run.callbacks(FavorRedrawCallback()),
    )
