"""`seqstruct contrastive`: SimCSE-style sentence embeddings on sentence-transformers' trainer
(unsupervised: each text twice, dropout the augmentation; supervised: pairs from the dataset, optionally
with graph-sibling hard negatives), in a Run directory like every training command.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from sentence_transformers import (
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.base.sampler import BatchSamplers, MultiDatasetBatchSamplers
from transformers import PreTrainedModel, set_seed

from seqstruct.attention.interface import FavorRedrawCallback
from seqstruct.config import ContrastiveConfig
from seqstruct.data.pairs import (
    AUTO,
    KINDS,
    POSITIVES,
    PairSet,
    build_pairs,
    heldout_pairs,
    resolve_kind,
    trainer_dataset,
)
from seqstruct.data.prepared import TRAIN, load_prepared
from seqstruct.models.io import save_sentence_model
from seqstruct.models.pooling import POOLINGS
from seqstruct.models.sentence import is_pooling_type, sentence_model
from seqstruct.objectives.contrastive import contrastive_loss, encoder_dropout, set_encoder_dropout
from seqstruct.objectives.geometry import geometry
from seqstruct.training.run import Run, final_evaluation

logger = logging.getLogger(__name__)

CONTRASTIVE_SETTINGS = ("unsupervised", "supervised")


def check_contrastive(config: ContrastiveConfig) -> None:
    """Refuse settings that cannot train, before any data or model is read."""
    if config.setting not in CONTRASTIVE_SETTINGS:
        raise ValueError(f"setting must be one of {CONTRASTIVE_SETTINGS}; got {config.setting!r}")
    supervised_kinds = [k for k in KINDS if k != "unsupervised"]
    if config.pairs not in (*supervised_kinds, AUTO):
        raise ValueError(f"pairs must be one of {[*supervised_kinds, AUTO]}; got {config.pairs!r}")
    if config.positive not in POSITIVES:
        raise ValueError(f"positive must be one of {POSITIVES}; got {config.positive!r}")
    if config.pooling and config.pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {sorted(POOLINGS)} (or '' to keep a saved model's)")
    if config.hard_negatives and config.setting == "unsupervised":
        raise ValueError("hard_negatives needs setting=supervised: unsupervised pairs are (x, x)")
    if not config.temperature > 0:
        raise ValueError(f"temperature must be positive; got {config.temperature}")
    if config.train.pooling_learning_rate < 0:
        raise ValueError(
            f"train.pooling_learning_rate must be >= 0 (0: learning_rate); got {config.train.pooling_learning_rate}"
        )
    if config.dropout is not None and not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1) or null (keep the model's); got {config.dropout}")
    if config.max_length < 2 or config.max_pairs < 0 or config.eval_pairs < 0:
        raise ValueError("max_length must be >= 2, max_pairs and eval_pairs >= 0 (0: all / none)")
    if not config.dataset:
        raise ValueError("dataset is not set: give a prepared dataset directory (`seqstruct data prepare`)")
    if not config.model:
        raise ValueError("model is not set: give `minilm`, a saved model directory or a contrastive output")


def pooling_learning_rates(model: SentenceTransformer, rate: float) -> dict[str, float]:
    """`learning_rate_mapping` for SentenceTransformerTrainingArguments: the pooling module's weights at
    `rate`; {} for rate 0 or a pooling without weights (with a warning: the setting then does nothing).
    The trainer matches these patterns against the loss's parameter names, in which the model is `model.`
    (and fails if none match)."""
    if rate <= 0:
        return {}
    index = next((i for i in range(1, len(model)) if is_pooling_type(type(model[i]).__name__)), None)
    if index is None or not any(p.requires_grad for p in model[index].parameters()):
        found = "no pooling module" if index is None else f"{type(model[index]).__name__}, which has none"
        logger.warning(
            "train.pooling_learning_rate=%g is ignored: it is for a pooling's trainable weights, "
            "and the model has %s",
            rate,
            found,
        )
        return {}
    return {rf"^model\.{index}\.": rate}


def contrastive_arguments(
    config: ContrastiveConfig, run: Run, evaluate: bool, model: SentenceTransformer
) -> SentenceTransformerTrainingArguments:
    # Negatives are the other rows of a micro-batch: gradient accumulation adds steps, not negatives.
    return SentenceTransformerTrainingArguments(
        **run.arguments(evaluate),
        learning_rate_mapping=pooling_learning_rates(model, config.train.pooling_learning_rate),
        # A text that is also another row's anchor or positive would be a false negative in the batch.
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        # Pairs with and without a hard negative are two datasets (seqstruct.data.pairs.trainer_dataset):
        # each batch comes from one, chosen in proportion to their sizes, so every pair is seen each epoch.
        multi_dataset_batch_sampler=MultiDatasetBatchSamplers.PROPORTIONAL,
    )


def _sentence_encoder(model: SentenceTransformer) -> PreTrainedModel | None:
    """The transformers model inside a SentenceTransformer (its first module's), or None."""
    first = model[0] if len(model) else None
    return getattr(first, "auto_model", None)


def heldout_geometry(model: SentenceTransformer, pairs: PairSet, batch_size: int) -> dict[str, float]:
    """Alignment over the held-out pairs and uniformity over their distinct texts (Wang & Isola 2020,
    `seqstruct.objectives.geometry`), on the model's embeddings as `encode` gives them (eval mode, no
    dropout). A text repeated across pairs (a term name with several synonyms) is one point, so that it
    does not count as a pair at distance 0. Unsupervised pairs are (x, x): their alignment is 0."""
    anchors, positives = pairs.dataset["anchor"], pairs.dataset["positive"]
    texts = list(dict.fromkeys([*anchors, *positives]))  # distinct, first-seen order
    row = {text: i for i, text in enumerate(texts)}
    vectors = model.encode(
        texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False
    ).cpu()  # (M, D); normalised in `geometry`
    return geometry(vectors[[row[t] for t in anchors]], vectors[[row[t] for t in positives]], points=vectors)


class SentenceFavorRedrawCallback(FavorRedrawCallback):
    """FAVOR+ redraws for a SentenceTransformer: the Trainer hands over the whole model, whose FAVOR+
    settings live on the transformers encoder inside it."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        encoder = None if model is None else _sentence_encoder(model)
        return super().on_step_end(args, state, control, model=encoder, **kwargs)


def contrastive(config: ContrastiveConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train sentence embeddings with InfoNCE on in-batch negatives (`seqstruct.objectives.contrastive`):
    unsupervised SimCSE (each training text twice, dropout the augmentation) or supervised pairs from the
    dataset's train split (`seqstruct.data.pairs`), optionally with graph-sibling hard negatives.

    Writes to `output_dir` a sentence-transformers directory (`seqstruct.load_sentence_model(output_dir)`;
    plain `SentenceTransformer(output_dir)` too where the pooling is the library's own, see
    seqstruct.models.sentence: config.json, model.safetensors and tokenizer at the top, modules.json, the
    pooling module's folder), config.yaml, metrics.json, log.csv, tensorboard/ and checkpoints/ (resume
    points). Returns the metrics: with held-out pairs, their eval_loss (`heldout`) and their alignment and
    uniformity before and after training (`geometry`, see `heldout_geometry`).
    """
    check_contrastive(config)
    with Run(config, resume, overwrite) as run:
        prepared = load_prepared(config.dataset)
        kind = resolve_kind(prepared, config.pairs, config.setting)
        train_pairs = build_pairs(
            prepared,
            TRAIN,
            kind,
            hard_negatives=config.hard_negatives,
            max_pairs=config.max_pairs,
            seed=config.pair_seed,
            positive=config.positive,
        )
        eval_pairs = (
            heldout_pairs(
                prepared, kind, max_pairs=config.eval_pairs, seed=config.pair_seed, positive=config.positive
            )
            if config.eval_pairs
            else None
        )

        set_seed(config.train.seed)
        finished = run.done is not None
        model = sentence_model(
            run.checkpoint if finished else config.model,
            pooling=None if finished else (config.pooling or None),
            max_length=config.max_length,
            attn_implementation=config.attention or None,
            seed=config.train.seed,
        )
        encoder = _sentence_encoder(model)
        if encoder is None:
            raise ValueError(
                f"{config.model}: the sentence model's first module holds no transformers encoder"
            )
        if config.dropout is not None:
            set_encoder_dropout(encoder, config.dropout)
        dropout = encoder_dropout(encoder)
        if config.setting == "unsupervised" and dropout == 0.0:
            raise ValueError(
                f"{config.model} has no dropout, and unsupervised contrastive training uses dropout as its only "
                "augmentation (identical views teach nothing): set dropout=0.1"
            )

        # The held-out geometry of the model training starts from (a resumed run rebuilds that same model
        # before the trainer loads its checkpoint; a finished one reports what its first run measured).
        before = None
        if eval_pairs is not None:
            before = (
                run.previous_metrics().get("geometry", {}).get("before")
                if finished
                else heldout_geometry(model, eval_pairs, config.train.eval_batch_size)
            )

        run.clear_stale()
        trainer = SentenceTransformerTrainer(
            model=model,
            args=contrastive_arguments(config, run, evaluate=eval_pairs is not None, model=model),
            train_dataset=trainer_dataset(train_pairs),
            eval_dataset=None if eval_pairs is None else trainer_dataset(eval_pairs),
            loss=contrastive_loss(model, config.temperature),
            callbacks=run.callbacks(SentenceFavorRedrawCallback()),
        )
        run.save_config(trainer)
        train_loss, runtime = run.train(trainer)
        heldout = final_evaluation(trainer) if eval_pairs is not None else None
        after = (
            heldout_geometry(trainer.model, eval_pairs, config.train.eval_batch_size)
            if eval_pairs is not None
            else None
        )
        metrics = {
            "model": config.model,
            "setting": config.setting,
            "pairs": kind,
            "hard_negatives": config.hard_negatives,
            "temperature": config.temperature,
            "dropout": dropout,
            "modules": [type(module).__name__ for module in model],
            "embedding_dimension": model.get_embedding_dimension(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_pairs": len(train_pairs),
            "pairs_available": train_pairs.candidates,
            "pairs_without_negative": train_pairs.without_negative,
            "heldout_pairs": 0 if eval_pairs is None else len(eval_pairs),
            "steps": trainer.state.global_step,
            "train_loss": train_loss,
            "train_runtime_s": runtime,
            "heldout": heldout,
            # Alignment and uniformity of the held-out pairs' embeddings before and after training.
            "geometry": None if eval_pairs is None else {"before": before, "after": after},
            "bf16": trainer.args.bf16,
            "torch_threads": torch.get_num_threads(),
            "world_size": trainer.args.world_size,
        }
        if trainer.is_world_process_zero():
            save_sentence_model(trainer.model, run.paths.root)
        run.write_metrics(trainer, metrics)
        return metrics
