"""The one place where Trainers are built: masked-LM pretraining of protein encoders on the HF Trainer.

Checkpoints, resume, DDP (torchrun / accelerate launch), progress bars and TensorBoard come from the
Trainer; this module only wires data, model, metrics and outputs together.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from sentence_transformers import (
    SentenceTransformer,
    SentenceTransformerTrainer,
    SentenceTransformerTrainingArguments,
)
from sentence_transformers.base.sampler import BatchSamplers, MultiDatasetBatchSamplers
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
    set_seed,
)
from transformers.integrations import TensorBoardCallback
from transformers.trainer_utils import get_last_checkpoint

from seqstruct.attention.interface import FavorRedrawCallback
from seqstruct.budget import MaskedLMTrainer, TimeBudgetCallback
from seqstruct.config import (
    ContrastiveConfig,
    PretrainConfig,
    StructureConfig,
    TrainConfig,
    config_dict,
    load_config,
    save_config,
)
from seqstruct.data.collate import MaskedLMCollator, TokenBudgetBatchSampler
from seqstruct.data.fasta import FastaRecord, read_fasta, write_fasta
from seqstruct.data.graph import Graph, GraphReport, read_edge_list
from seqstruct.data.labels import read_labels
from seqstruct.data.pairs import (
    AUTO,
    KINDS,
    POSITIVES,
    build_pairs,
    heldout_pairs,
    resolve_kind,
    trainer_dataset,
)
from seqstruct.data.prepared import TRAIN, load_prepared
from seqstruct.data.pretraining import heldout_split, premask, protein_dataset
from seqstruct.data.structure import GraphContrastCollator, pop_structure
from seqstruct.data.tokenizers import build_protein_tokenizer
from seqstruct.io import atomic_open
from seqstruct.models.encoders import (
    build_encoder,
    count_parameters,
    keep_module_weight_names,
    load_pretrained_mlm,
    save_model_dir,
)
from seqstruct.models.pooling import POOLINGS, TOKEN_POOLINGS, get_pooling
from seqstruct.models.sentence import is_pooling_type, sentence_model
from seqstruct.objectives.contrastive import contrastive_loss, encoder_dropout, set_encoder_dropout
from seqstruct.objectives.mlm import Unigram, masked_lm_metrics, token_predictions
from seqstruct.objectives.structure import StructureObjective

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPaths:
    """Where a pretraining run writes, all under its output directory."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def log_csv(self) -> Path:
        return self.root / "log.csv"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def heldout_fasta(self) -> Path:
        return self.root / "heldout.fasta"


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


class CollatorEpochCallback(TrainerCallback):
    """Tell the collator which epoch begins, so that its per-batch crops and masks change every epoch."""

    def __init__(self, collator: MaskedLMCollator | GraphContrastCollator) -> None:
        self.collator = collator

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # state.epoch is e exactly at a fresh epoch's start and e + k/n when resuming inside epoch e.
        self.collator.epoch = math.floor((state.epoch or 0.0) + 1e-6)


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


# Settings a resumed run may change: where it is, how long it goes on, how its data is loaded.
RESUMABLE_CHANGES = ("output_dir", "train.max_steps", "train.max_minutes", "train.num_workers")


def _check_same_run(paths: RunPaths, config: Any) -> None:
    """Refuse to resume under other settings: a new seed or FASTA, say, would draw another held-out split
    and put evaluation proteins into training."""
    if not paths.config.exists():
        return
    # Read through the dataclass, so that sections added since the run began count as their defaults.
    saved = _flatten(config_dict(load_config(type(config), paths.config)))
    current = _flatten(config_dict(config))
    differs = sorted(
        k
        for k in saved.keys() | current.keys()
        if k not in RESUMABLE_CHANGES and saved.get(k) != current.get(k)
    )
    if differs:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in differs)
        raise FileExistsError(
            f"{paths.root} holds a run with other settings ({detail}); resume it with its own config.yaml, "
            "start afresh (pretrain --overwrite, demo --fresh), or choose another output directory"
        )


def _resume_point(
    paths: RunPaths, config: PretrainConfig, resume: bool, overwrite: bool
) -> tuple[str | None, bool]:
    """(checkpoint to resume from, whether an old run's checkpoints must be cleared before training).

    Nothing is deleted here: clearing waits until the new run's inputs have been read and checked.
    """
    last = get_last_checkpoint(str(paths.checkpoints)) if paths.checkpoints.is_dir() else None
    if resume:
        if last is None:
            raise FileNotFoundError(
                f"--resume: no checkpoint in {paths.checkpoints}; run without --resume to start"
            )
        _check_same_run(paths, config)
        logger.info("resuming from %s", last)
        return last, False
    if last is not None and not overwrite:
        raise FileExistsError(
            f"{paths.root} already holds checkpoints ({last}); pass --resume to continue that run, "
            "--overwrite to start again, or choose another output_dir"
        )
    return None, last is not None


def _clear_old_run(paths: RunPaths) -> None:
    # Every DDP rank gets here; whichever removes a directory first wins, the others find it gone.
    for directory in (paths.checkpoints, paths.tensorboard):
        shutil.rmtree(directory, ignore_errors=True)


def use_bf16(precision: str) -> bool:
    """Resolve the `precision` setting: bf16 autocast pays off only where the hardware computes bf16 fast."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"train.precision must be auto, fp32 or bf16; got {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    # AMX tiles make CPU bf16 matrix products several times faster than fp32; without them bf16 is slower.
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


# transformers schedules that take a floor (`min_lr_rate`, the share of the peak they decay to).
MIN_LR_SCHEDULERS = ("cosine_with_min_lr", "cosine_warmup_with_min_lr")


def check_schedule(train: TrainConfig) -> None:
    """Refuse schedule settings that the Trainer would reject late or apply silently otherwise."""
    use_bf16(train.precision)
    TimeBudgetCallback(train.max_minutes)  # its range check
    if not 0.0 <= train.min_lr_ratio < 1.0:
        raise ValueError(f"train.min_lr_ratio must be in [0, 1); got {train.min_lr_ratio}")
    if train.min_lr_ratio and train.lr_scheduler not in MIN_LR_SCHEDULERS:
        raise ValueError(
            f"train.min_lr_ratio={train.min_lr_ratio} needs lr_scheduler one of {MIN_LR_SCHEDULERS}; "
            f"{train.lr_scheduler!r} decays to 0"
        )
    if train.num_workers < 0:
        raise ValueError(f"train.num_workers must be >= 0; got {train.num_workers}")


def _schedule_arguments(train: TrainConfig, paths: RunPaths, evaluate: bool) -> dict[str, Any]:
    """The TrainingArguments every seqstruct run shares: schedule, checkpoints, precision, logging."""
    check_schedule(train)
    return dict(
        output_dir=str(paths.checkpoints),
        max_steps=train.max_steps,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.eval_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        learning_rate=train.learning_rate,
        warmup_steps=train.warmup_steps,
        lr_scheduler_type=train.lr_scheduler,
        lr_scheduler_kwargs={"min_lr_rate": train.min_lr_ratio} if train.min_lr_ratio else {},
        optim=train.optim,
        torch_compile=train.torch_compile,
        weight_decay=train.weight_decay,
        adam_beta2=train.adam_beta2,
        logging_steps=train.logging_steps,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=train.eval_steps,
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=train.save_total_limit,
        seed=train.seed,
        data_seed=train.seed,
        bf16=use_bf16(train.precision),
        use_cpu=not torch.cuda.is_available(),  # transformers asks for this explicitly with bf16 on CPU
        dataloader_num_workers=train.num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        report_to="none",  # TensorBoard is attached with a fixed directory (build_trainer)
        disable_tqdm=False,
    )


def training_arguments(config: PretrainConfig, paths: RunPaths, evaluate: bool = True) -> TrainingArguments:
    return TrainingArguments(
        **_schedule_arguments(config.train, paths, evaluate),
        train_sampling_strategy="group_by_length",
        length_column_name="length",
        # The collator reads `sequence`, which the model's forward does not take.
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
    )


def _completed_state(checkpoint: str | None, max_steps: int) -> TrainerState | None:
    """The checkpoint's trainer state if it already reached `max_steps`, else None."""
    if checkpoint is None:
        return None
    state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    return state if state.global_step >= max_steps else None


def _previous_metric(paths: RunPaths, key: str) -> Any:
    """A figure from the metrics.json of the run being finished, if it wrote one (None otherwise)."""
    if not paths.metrics.exists():
        return None
    return json.loads(paths.metrics.read_text(encoding="utf-8")).get(key)


def _final_evaluation(trainer: Trainer) -> dict[str, float]:
    """The held-out metrics at the last step: reused when the Trainer's schedule just computed them."""
    last = trainer.state.log_history[-2:]  # [..., eval row, train summary row] when eval fell on the end
    for row in last:
        if "eval_loss" in row and row.get("step") == trainer.state.global_step:
            return {k: v for k, v in row.items() if k.startswith("eval_")}
    return trainer.evaluate()


@dataclass(frozen=True)
class StructureData:
    """The graph over the training sequences and what the graph collator needs besides it."""

    graph: Graph  # over the training sequences, in training-set order
    sequences: list[str]  # node index -> sequence
    groups: np.ndarray | None  # [N] group per node, or None
    report: GraphReport  # what reading the full edge list found


def structure_objective(settings: StructureConfig) -> StructureObjective:
    return StructureObjective(settings.loss, settings.weight, settings.margin, settings.temperature)


def check_structure(settings: StructureConfig) -> None:
    """Refuse settings that cannot train, before any data is read."""
    structure_objective(settings)  # loss name and weight range
    if settings.pooling not in TOKEN_POOLINGS:  # the objective pools the last hidden state only
        raise ValueError(
            f"structure.pooling must be one of {sorted(TOKEN_POOLINGS)}; got {settings.pooling!r}"
        )
    if settings.weight > 0 and not settings.graph:
        raise ValueError("structure.weight > 0 needs structure.graph: the edge list over the FASTA ids")
    if settings.negatives < 0:
        raise ValueError(f"structure.negatives must be >= 0; got {settings.negatives}")
    if settings.margin <= 0 or settings.temperature <= 0:
        raise ValueError("structure.margin and structure.temperature must be positive")
    if settings.group_column and not settings.groups:
        raise ValueError("structure.group_column is set but structure.groups (the TSV) is not")


def load_structure(
    settings: StructureConfig, records: list[FastaRecord], train_ids: list[str]
) -> StructureData:
    """Read and check the edge list over every record, then keep the graph among training sequences: a
    held-out protein is neither a positive nor a negative, so masked-LM evaluation never sees it in training."""
    graph, report = read_edge_list(settings.graph, [r.id for r in records], directed=settings.directed)
    position = {node: i for i, node in enumerate(graph.nodes)}
    keep = np.array([position[i] for i in train_ids], dtype=np.int64)
    train_graph = graph.subgraph(keep)
    sequences = {r.id: r.sequence for r in records}
    groups = None
    if settings.groups:
        table = read_labels(settings.groups, graph.nodes)
        column = settings.group_column or next(iter(table))
        if column not in table:
            raise ValueError(f"{settings.groups}: no column {column!r}; it has {sorted(table)}")
        groups = table[column][keep]
    kept = int(len(train_graph.edges))
    logger.info(
        "structure graph: %d of %d edges lie among the %d training sequences", kept, report.edges, len(keep)
    )
    if kept == 0:
        raise ValueError(f"{settings.graph}: no edge joins two training sequences")
    return StructureData(train_graph, [sequences[i] for i in train_graph.nodes], groups, report)


class StructureTrainer(MaskedLMTrainer):
    """The Trainer with the structure-inducing objective: (1 − λ)·MLM + λ·structure on batches from
    `GraphContrastCollator`; batches without `structure_*` entries (evaluation) get the plain MLM loss.

    The model stays the plain masked-LM model, so checkpoints, resume and `save_pretrained` are those of
    plain pretraining; the final hidden states come from a forward hook on the base model (the encoder
    body, whose `last_hidden_state` is what `encode()` pools at inference). The two terms' running means
    are logged beside the loss as `mlm_loss` and `structure_loss`.
    """

    def __init__(self, *args: Any, objective: StructureObjective, pooling: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.pool = get_pooling(pooling)
        self._sums: dict[str, torch.Tensor | float] = {"mlm_loss": 0.0, "structure_loss": 0.0}
        self._count = 0

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        rows = pop_structure(inputs)
        if not rows:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        captured: list[torch.Tensor] = []
        body = self.accelerator.unwrap_model(model).base_model
        hook = body.register_forward_hook(lambda module, args, output: captured.append(output[0]))
        try:
            mlm_loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        finally:
            hook.remove()
        pooled = self.pool(captured[0], rows["pool_mask"])  # [R, D]
        structure_loss = self.objective.structure_loss(pooled, rows)
        if model.training:  # kept as tensors: a float() per step would make the GPU wait every step
            self._sums["mlm_loss"] = self._sums["mlm_loss"] + mlm_loss.detach()
            self._sums["structure_loss"] = self._sums["structure_loss"] + structure_loss.detach()
            self._count += 1
        loss = self.objective.combine(mlm_loss, structure_loss)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._count:
            logs |= {key: float(total) / self._count for key, total in self._sums.items()}
            self._sums = dict.fromkeys(self._sums, 0.0)
            self._count = 0
        super().log(logs, start_time)


def build_trainer(
    config: PretrainConfig,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_set: Dataset,
    eval_set: Dataset | None = None,
    unigram: Unigram | None = None,
    structure: StructureData | None = None,
) -> Trainer:
    """The masked-LM Trainer: length-grouped batches (or token-budget ones, `data.max_tokens`), per-batch
    seeded crops and masks, token-level held-out metrics (against `unigram` on the same positions when
    given), CSV and TensorBoard logs, a wall-clock stop (`train.max_minutes`); with `structure` and a
    positive `structure.weight`, the structure-inducing Trainer on graph batches."""
    paths = RunPaths(Path(config.output_dir))
    collator: MaskedLMCollator | GraphContrastCollator = MaskedLMCollator(
        tokenizer, config.data.max_length, config.data.mlm_probability, seed=config.train.seed
    )
    trainer_class: type[MaskedLMTrainer] = MaskedLMTrainer
    extra: dict[str, Any] = {"batch_sampler": token_budget_sampler(config, train_set)}
    if structure is not None and config.structure.weight > 0:
        collator = GraphContrastCollator(
            collator, structure.graph, structure.sequences, config.structure.negatives, structure.groups
        )
        trainer_class = StructureTrainer
        extra |= {"objective": structure_objective(config.structure), "pooling": config.structure.pooling}
    tensorboard = TensorBoardCallback()
    # Fixed, so that a final evaluation after training (the callback reopens its writer) lands there too.
    tensorboard.logging_dir = str(paths.tensorboard)
    return trainer_class(
        model=keep_module_weight_names(model),
        args=training_arguments(config, paths, evaluate=eval_set is not None),
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=lambda p: masked_lm_metrics(p.predictions, p.label_ids, unigram),
        preprocess_logits_for_metrics=token_predictions,
        callbacks=[
            CsvLogCallback(paths.log_csv),
            CollatorEpochCallback(collator),
            FavorRedrawCallback(),
            TimeBudgetCallback(config.train.max_minutes),
            tensorboard,
        ],
        **extra,
    )


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


def training_records(config: PretrainConfig) -> tuple[list[FastaRecord], str]:
    """The training sequences with their ids, and their kind (protein | text): from `data.fasta`, or from
    the train split of the prepared dataset `data.dataset` (a text dataset's records hold text)."""
    if bool(config.data.fasta) == bool(config.data.dataset):
        raise ValueError(
            "give exactly one of data.fasta (training FASTA) and data.dataset (a prepared dataset directory)"
        )
    if config.data.fasta:
        return read_fasta(config.data.fasta), "protein"
    from seqstruct.data.prepared import TRAIN, load_prepared

    prepared = load_prepared(config.data.dataset)
    train = prepared.split(TRAIN)
    records = [FastaRecord(i, "", text) for i, text in zip(train["id"], train["text"], strict=True)]
    return records, prepared.info.kind


def _encoder_and_tokenizer(config: PretrainConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if config.model.pretrained:
        return load_pretrained_mlm(config.model.pretrained, config.model.attention, config.model.dropout)
    tokenizer = build_protein_tokenizer()
    model = build_encoder(
        config.model.preset, tokenizer, config.model.attention, config.model.dropout, config.model.favor
    )
    return model, tokenizer


def split_heldout(
    config: PretrainConfig, records: list[FastaRecord]
) -> tuple[Dataset, Dataset, list[FastaRecord]]:
    """(training set, held-out set, the records the held-out ids come from): a seeded share of `records`,
    or with `data.eval_fasta` those proteins (a seeded sample of `eval_max`) and every record trains."""
    max_length = config.data.max_length
    if not config.data.eval_fasta:
        train, heldout = heldout_split(
            protein_dataset(records, max_length),
            config.data.eval_fraction,
            config.data.eval_max,
            config.train.seed,
        )
        return train, heldout, records
    heldout_records = read_fasta(config.data.eval_fasta)
    shared = {r.id for r in records} & {r.id for r in heldout_records}
    if shared:
        raise ValueError(
            f"data.eval_fasta {config.data.eval_fasta} shares {len(shared)} id(s) with the training data, "
            f"e.g. {sorted(shared)[0]!r}: held-out proteins must not be trained on"
        )
    heldout = protein_dataset(heldout_records, max_length)
    if len(heldout) > config.data.eval_max:
        picks = np.random.default_rng(config.train.seed).choice(
            len(heldout), config.data.eval_max, replace=False
        )
        heldout = heldout.select(np.sort(picks))
    return protein_dataset(records, max_length), heldout, heldout_records


def throughput(
    tokens: int, runtime: float | None, checkpoint: str | None, done: TrainerState | None
) -> float | None:
    """Training tokens a second in this process; None when it resumed (the count includes earlier
    processes' tokens, the runtime does not) or trained nothing."""
    if checkpoint is not None or done is not None or not runtime:
        return None
    return tokens / runtime


def _write_heldout(paths: RunPaths, records: list[FastaRecord], ids: set[str], kind: str) -> None:
    """The held-out sequences with their ids: FASTA for proteins, `id<TAB>text` for text (FASTA would
    re-wrap sentences and join their lines without spaces)."""
    if kind == "protein":
        write_fasta((r for r in records if r.id in ids), paths.heldout_fasta)
        return
    with atomic_open(paths.root / "heldout.tsv") as handle:
        handle.write("id\ttext\n")
        handle.writelines(f"{r.id}\t{r.sequence}\n" for r in records if r.id in ids)


def pretrain(config: PretrainConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Masked-LM pretraining (a fresh protein encoder, or continued from `model.pretrained`); with a
    `structure` graph, structure-inducing. Returns the final metrics (also in metrics.json)."""
    paths = RunPaths(Path(config.output_dir))
    if not config.data.fasta and not config.data.dataset:
        raise ValueError(
            "data.fasta is not set: give the training FASTA in the config or as data.fasta=PATH "
            "(or a prepared dataset as data.dataset=DIR)"
        )
    checkpoint, stale = _resume_point(paths, config, resume, overwrite)
    check_schedule(config.train)  # a bad setting fails now, not after the data is read
    check_structure(config.structure)
    check_batching(config)

    set_seed(config.train.seed)
    done = _completed_state(checkpoint, config.train.max_steps)
    if done is not None:
        # transformers 5 trains one step past max_steps when resuming a finished run: take its weights as is.
        logger.info(
            "%s already reached max_steps=%d: evaluating and saving only", checkpoint, config.train.max_steps
        )
        model = AutoModelForMaskedLM.from_pretrained(checkpoint, attn_implementation=config.model.attention)
        tokenizer = AutoTokenizer.from_pretrained(checkpoint)  # the Trainer saves it with every checkpoint
    else:
        model, tokenizer = _encoder_and_tokenizer(config)

    records, kind = training_records(config)
    train_set, heldout, heldout_records = split_heldout(config, records)
    eval_set = premask(
        heldout, tokenizer, config.data.max_length, config.data.mlm_probability, config.train.seed
    )
    logger.info("%d training %s records, %d held out", len(train_set), kind, len(eval_set))
    unigram = Unigram.fit(train_set["sequence"], tokenizer)
    # Read (and so checked) whenever given; at weight 0 it is not used, and the run is plain masked-LM.
    structure = load_structure(config.structure, records, train_set["id"]) if config.structure.graph else None
    if stale:
        _clear_old_run(paths)
    trainer = build_trainer(config, model, tokenizer, train_set, eval_set, unigram, structure)
    if trainer.is_world_process_zero():
        save_config(config, paths.config)
        _write_heldout(paths, heldout_records, set(eval_set["id"]), kind)

    if done is None:
        output = trainer.train(resume_from_checkpoint=checkpoint)
        train_loss, runtime = output.training_loss, output.metrics.get("train_runtime")
    else:
        trainer.state = done
        train_loss, runtime = (
            _previous_metric(paths, "train_loss"),
            _previous_metric(paths, "train_runtime_s"),
        )
    final_eval = _final_evaluation(trainer)
    scores = {k.removeprefix("eval_"): v for k, v in final_eval.items()}
    sampler = trainer.batch_sampler
    metrics = {
        "parameters": count_parameters(model),
        "train_proteins": len(train_set),
        "mean_example_tokens": float(np.mean(train_set["length"])),  # after cropping; for FLOP estimates
        "heldout_proteins": len(eval_set),
        "steps": trainer.state.global_step,
        "train_loss": train_loss,
        "train_runtime_s": runtime,
        "train_tokens": trainer.state.num_input_tokens_seen,
        # Residues and special tokens (not padding) a second, over this process's training time only.
        "train_tokens_per_s": throughput(trainer.state.num_input_tokens_seen, runtime, checkpoint, done),
        "batching": {"max_tokens": config.data.max_tokens, **sampler.padding()} if sampler else None,
        "stopped_by_max_minutes": any(
            isinstance(c, TimeBudgetCallback) and c.stopped for c in trainer.callback_handler.callbacks
        ),
        "heldout": scores,
        "unigram_baseline": {
            "masked_accuracy": scores["unigram_accuracy"],
            "perplexity": scores["unigram_perplexity"],
            "most_frequent": tokenizer.convert_ids_to_tokens(unigram.most_frequent),
        },
        "structure": None
        if structure is None
        else {
            "weight": config.structure.weight,
            "loss": config.structure.loss,
            "pooling": config.structure.pooling,
            "graph_edges": structure.report.edges,
            "training_edges": int(len(structure.graph.edges)),
            "graph": structure.report.summary(),
        },
        "bf16": trainer.args.bf16,
        "torch_threads": torch.get_num_threads(),
        "world_size": trainer.args.world_size,
    }
    if trainer.is_world_process_zero():
        save_model_dir(trainer.model, tokenizer, paths.root)
        with atomic_open(paths.metrics, "w") as handle:
            json.dump(metrics, handle, indent=2)
    return metrics


# ---------------------------------------------------------------------------------------------------
# `seqstruct contrastive`: SimCSE-style sentence embeddings on sentence-transformers' trainer
# ---------------------------------------------------------------------------------------------------

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
    config: ContrastiveConfig, paths: RunPaths, evaluate: bool, model: SentenceTransformer
) -> SentenceTransformerTrainingArguments:
    # Negatives are the other rows of a micro-batch: gradient accumulation adds steps, not negatives.
    return SentenceTransformerTrainingArguments(
        **_schedule_arguments(config.train, paths, evaluate),
        learning_rate_mapping=pooling_learning_rates(model, config.train.pooling_learning_rate),
        # A text that is also another row's anchor or positive would be a false negative in the batch.
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        # Pairs with and without a hard negative are two datasets (seqstruct.data.pairs.trainer_dataset):
        # each batch comes from one, chosen in proportion to their sizes, so every pair is seen each epoch.
        multi_dataset_batch_sampler=MultiDatasetBatchSamplers.PROPORTIONAL,
    )


def save_sentence_model(model: SentenceTransformer, directory: Path) -> None:
    """`model.save_pretrained(directory)`, written beside the run's other files without ever leaving a
    half-written weights file in place: saved to a temporary directory, then moved in entry by entry."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".save-") as tmp:
        model.save_pretrained(tmp)
        for entry in sorted(Path(tmp).iterdir()):
            target = directory / entry.name
            if target.is_dir():  # a module folder from an earlier save: replaced whole
                shutil.rmtree(target)
            os.replace(entry, target)


def _sentence_encoder(model: SentenceTransformer) -> PreTrainedModel | None:
    """The transformers model inside a SentenceTransformer (its first module's), or None."""
    first = model[0] if len(model) else None
    return getattr(first, "auto_model", None)


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
    points). Returns the metrics.
    """
    paths = RunPaths(Path(config.output_dir))
    check_contrastive(config)
    checkpoint, stale = _resume_point(paths, config, resume, overwrite)  # type: ignore[arg-type]
    use_bf16(config.train.precision)  # a bad setting fails now, not after the data is read

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
    done = _completed_state(checkpoint, config.train.max_steps)
    if done is not None:
        # transformers 5 trains one step past max_steps when resuming a finished run: take its weights as is.
        logger.info(
            "%s already reached max_steps=%d: evaluating and saving only", checkpoint, config.train.max_steps
        )
    model = sentence_model(
        checkpoint if done is not None else config.model,
        pooling=None if done is not None else (config.pooling or None),
        max_length=config.max_length,
        attn_implementation=config.attention or None,
        seed=config.train.seed,
    )
    encoder = _sentence_encoder(model)
    if encoder is None:
        raise ValueError(f"{config.model}: the sentence model's first module holds no transformers encoder")
    if config.dropout is not None:
        set_encoder_dropout(encoder, config.dropout)
    dropout = encoder_dropout(encoder)
    if config.setting == "unsupervised" and dropout == 0.0:
        raise ValueError(
            f"{config.model} has no dropout, and unsupervised contrastive training uses dropout as its only "
            "augmentation (identical views teach nothing): set dropout=0.1"
        )

    if stale:
        _clear_old_run(paths)
    tensorboard = TensorBoardCallback()
    tensorboard.logging_dir = str(paths.tensorboard)  # fixed, as in build_trainer
    trainer = SentenceTransformerTrainer(
        model=model,
        args=contrastive_arguments(config, paths, evaluate=eval_pairs is not None, model=model),
        train_dataset=trainer_dataset(train_pairs),
        eval_dataset=None if eval_pairs is None else trainer_dataset(eval_pairs),
        loss=contrastive_loss(model, config.temperature),
        callbacks=[
            CsvLogCallback(paths.log_csv),
            SentenceFavorRedrawCallback(),
            TimeBudgetCallback(config.train.max_minutes),
            tensorboard,
        ],
    )
    main_process = trainer.is_world_process_zero()
    if main_process:
        save_config(config, paths.config)

    if done is None:
        output = trainer.train(resume_from_checkpoint=checkpoint)
        train_loss, runtime = output.training_loss, output.metrics.get("train_runtime")
    else:
        trainer.state = done
        train_loss = _previous_metric(paths, "train_loss")
        runtime = _previous_metric(paths, "train_runtime_s")
    heldout = None
    if eval_pairs is not None:
        heldout = {k.removeprefix("eval_"): v for k, v in _final_evaluation(trainer).items()}
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
        "bf16": trainer.args.bf16,
        "torch_threads": torch.get_num_threads(),
        "world_size": trainer.args.world_size,
    }
    if main_process:
        save_sentence_model(trainer.model, paths.root)
        with atomic_open(paths.metrics, "w") as handle:
            json.dump(metrics, handle, indent=2)
    return metrics
