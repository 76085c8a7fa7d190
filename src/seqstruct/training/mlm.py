"""Masked-LM pretraining of sequence encoders on the HF Trainer (`seqstruct pretrain`): a fresh protein
encoder or one continued from `model.pretrained`; with a `structure` graph, structure-inducing.

Checkpoints, resume, DDP (torchrun / accelerate launch), progress bars and TensorBoard come from the
Trainer; the Run (seqstruct.training.run) keeps the output directory's rules; this module wires data,
model, metrics and outputs together.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
    set_seed,
)

from seqstruct.attention.interface import FavorRedrawCallback
from seqstruct.config import PretrainConfig
from seqstruct.data.collate import MaskedLMCollator
from seqstruct.data.fasta import FastaRecord, read_fasta, write_fasta
from seqstruct.data.pretraining import heldout_split, premask, sequence_dataset
from seqstruct.data.structure import GraphContrastCollator
from seqstruct.data.tokenizers import build_protein_tokenizer
from seqstruct.io import atomic_open
from seqstruct.models.encoders import SEQUENCE_KIND, build_encoder, count_parameters, keep_module_weight_names
from seqstruct.models.io import load_pretrained_mlm, save_model_dir
from seqstruct.objectives.mlm import Unigram, masked_lm_metrics, token_predictions
from seqstruct.training.callbacks import CollatorEpochCallback
from seqstruct.training.run import Run, RunPaths, final_evaluation
from seqstruct.training.structure import (
    StructureData,
    StructureTrainer,
    chance_summary,
    check_structure,
    drop_projection,
    load_structure,
    structure_objective,
)
from seqstruct.training.token_budget import MaskedLMTrainer, check_batching, token_budget_sampler

logger = logging.getLogger(__name__)


def training_arguments(run: Run, evaluate: bool = True) -> TrainingArguments:
    return TrainingArguments(
        **run.arguments(evaluate),
        train_sampling_strategy="group_by_length",
        length_column_name="length",
        # The collator reads `sequence`, which the model's forward does not take.
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
    )


def build_trainer(
    config: PretrainConfig,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_set: Dataset,
    eval_set: Dataset | None = None,
    unigram: Unigram | None = None,
    structure: StructureData | None = None,
    run: Run | None = None,
) -> Trainer:
    """The masked-LM Trainer: length-grouped batches (or token-budget ones, `data.max_tokens`), per-batch
    seeded crops and masks, token-level held-out metrics (against `unigram` on the same positions when
    given) and, with a `structure` graph whose held-out sequences have edges, held-out link MRR
    (`eval_link_mrr`), CSV and TensorBoard logs, a wall-clock stop (`train.max_minutes`); with `structure`
    and a positive `structure.weight`, the structure-inducing Trainer on graph batches. Without `run` (a
    benchmark), one in `config.output_dir` that deletes nothing."""
    run = run or Run(config, overwrite=True, lock=False)
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
        extra |= {
            "objective": structure_objective(config.structure, config.train.warmup_steps),
            "pooling": config.structure.pooling,
            "projection_dim": config.structure.projection_dim,
        }
    links = structure.links if structure is not None else None

    def heldout_metrics(predictions: EvalPrediction) -> dict[str, float]:
        scores = masked_lm_metrics(predictions.predictions, predictions.label_ids, unigram)
        if links is not None:  # the model trained so far, as `encode` embeds it (every rank alike)
            mrr = links.mrr(model, tokenizer, config.structure.pooling, config.data.max_length)
            scores |= {} if mrr is None else {"link_mrr": mrr}
        return scores

    return trainer_class(
        model=keep_module_weight_names(model),
        args=training_arguments(run, evaluate=eval_set is not None),
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=heldout_metrics,
        preprocess_logits_for_metrics=token_predictions,
        callbacks=run.callbacks(CollatorEpochCallback(collator), FavorRedrawCallback()),
        **extra,
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
    config: PretrainConfig, records: list[FastaRecord], kind: str, tokenizer: PreTrainedTokenizerBase
) -> tuple[Dataset, Dataset, list[FastaRecord]]:
    """(training set, held-out set, the records the held-out ids come from): a seeded share of `records`,
    or with `data.eval_fasta` those proteins (a seeded sample of `eval_max`) and every record trains.
    `kind` (protein | text) says how lengths are counted."""

    def dataset(rows: list[FastaRecord]) -> Dataset:
        return sequence_dataset(rows, config.data.max_length, kind, tokenizer)

    if not config.data.eval_fasta:
        train, heldout = heldout_split(
            dataset(records),
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
    heldout = dataset(heldout_records)
    if len(heldout) > config.data.eval_max:
        picks = np.random.default_rng(config.train.seed).choice(
            len(heldout), config.data.eval_max, replace=False
        )
        heldout = heldout.select(np.sort(picks))
    return dataset(records), heldout, heldout_records


def throughput(tokens: int, runtime: float | None, trained_here: bool) -> float | None:
    """Training tokens a second in this process; None when it resumed (the count includes earlier
    processes' tokens, the runtime does not) or trained nothing."""
    if not trained_here or not runtime:
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
    if not config.data.fasta and not config.data.dataset:
        raise ValueError(
            "data.fasta is not set: give the training FASTA in the config or as data.fasta=PATH "
            "(or a prepared dataset as data.dataset=DIR)"
        )
    with Run(config, resume, overwrite) as run:
        check_structure(config.structure)
        check_batching(config)

        set_seed(config.train.seed)
        if run.done is not None:
            model = AutoModelForMaskedLM.from_pretrained(
                run.checkpoint, attn_implementation=config.model.attention
            )
            tokenizer = AutoTokenizer.from_pretrained(
                run.checkpoint
            )  # the Trainer saves it with every checkpoint
        else:
            model, tokenizer = _encoder_and_tokenizer(config)

        records, kind = training_records(config)
        train_set, heldout, heldout_records = split_heldout(config, records, kind, tokenizer)
        eval_set = premask(
            heldout, tokenizer, config.data.max_length, config.data.mlm_probability, config.train.seed
        )
        logger.info("%d training %s records, %d held out", len(train_set), kind, len(eval_set))
        unigram = Unigram.fit(train_set["sequence"], tokenizer)
        # Read (and so checked) whenever given; at weight 0 it is not used, and the run is plain masked-LM.
        structure = (
            load_structure(config.structure, records, train_set["id"], config.train.seed)
            if config.structure.graph
            else None
        )
        run.clear_stale()
        trainer = build_trainer(config, model, tokenizer, train_set, eval_set, unigram, structure, run)
        run.save_config(trainer)
        if trainer.is_world_process_zero():
            _write_heldout(run.paths, heldout_records, set(eval_set["id"]), kind)

        train_loss, runtime = run.train(trainer)
        drop_projection(trainer.model)  # the structure loss's head, if any, is not part of the encoder
        scores = final_evaluation(trainer)
        sampler = trainer.batch_sampler
        tokens = trainer.state.num_input_tokens_seen
        metrics = {
            "parameters": count_parameters(model),
            "train_proteins": len(train_set),
            "mean_example_tokens": float(np.mean(train_set["length"])),  # after cropping; for FLOP estimates
            "heldout_proteins": len(eval_set),
            "steps": trainer.state.global_step,
            "train_loss": train_loss,
            "train_runtime_s": runtime,
            "train_tokens": tokens,
            # Residues and special tokens (not padding) a second, over this process's training time only.
            "train_tokens_per_s": throughput(tokens, runtime, run.trained_here()),
            "batching": {"max_tokens": config.data.max_tokens, **sampler.padding()} if sampler else None,
            "stopped_by_max_minutes": run.budget.stopped,
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
                # the last logged structure loss against its chance value: did it learn the graph at all?
                **chance_summary(trainer.state.log_history),
                "link_mrr": scores.get("link_mrr"),  # held-out link retrieval at the last step
                "link_queries": None if structure.links is None else len(structure.links.queries),
            },
            "bf16": trainer.args.bf16,
            "torch_threads": torch.get_num_threads(),
            "world_size": trainer.args.world_size,
        }
        setattr(trainer.model.config, SEQUENCE_KIND, kind)  # what it encodes, for whoever loads it
        if trainer.is_world_process_zero():
            save_model_dir(trainer.model, tokenizer, run.paths.root)
        run.write_metrics(trainer, metrics)
        return metrics
