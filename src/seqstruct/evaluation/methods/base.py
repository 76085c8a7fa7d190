"""The base of every method: its key=value options, and features -> a probe (classification) or ->
cosine (kNN, links, search). Subclasses: `baselines`, `encoders` (a saved encoder, the BiLSTM),
`stored` (a .npz of embeddings)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from seqstruct.evaluation.probe import Features, multi_label_probe, single_label_probe
from seqstruct.evaluation.search import search
from seqstruct.evaluation.tasks import Classification, Labelled

logger = logging.getLogger(__name__)

MODES = ("probe", "finetune")


class NotApplicable(ValueError):
    """A method asked for something it cannot do (aac on text, BM25 classification, ...)."""


@dataclass
class MethodOptions:
    """key=value options of the methods; each method reads some of them (`Method.reads`)."""

    batch_size: int = 64  # encoder: sequences per embedding batch (probe), per training step (finetune)
    max_length: int | None = None  # encoder: tokens per input; None: whole proteins, a text model's limit
    max_train: int = 0  # train rows used (a fixed seeded sample, the same for every seed); 0: all
    max_valid: int = 0  # valid rows choosing C / stopping early (a fixed seeded sample); 0: all
    grid: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0])  # probe: C values tried
    probe_iter: int = 500  # probe: most Newton steps per C (many labels), lbfgs iterations (one label)
    epochs: float = 3.0  # finetune: passes over train (unless max_steps > 0)
    max_steps: int = -1  # finetune: optimizer steps, overriding epochs when > 0
    min_steps: int = 0  # finetune: more epochs where `epochs` would give fewer steps (small train sets)
    lr: float = 5e-5  # finetune: peak learning rate (linear decay)
    warmup_ratio: float = 0.1  # finetune: share of steps warming the learning rate up
    weight_decay: float = 0.01  # finetune: AdamW decoupled weight decay
    eval_steps: int = 0  # finetune: steps between validations (and checkpoints); 0: every epoch
    patience: int = 2  # finetune: validations without a better valid loss before stopping
    precision: str = (
        "auto"  # encoder: auto | fp32 | bf16 autocast, in embedding and fine-tuning (train.use_bf16)
    )
    max_hits: int = 10  # mmseqs: hits per query whose labels are transferred
    lstm_init: str = "random"  # lstm: token embeddings random | encoder (copied from DIR's encoder)
    lstm_layers: int = 1  # lstm: stacked bidirectional layers
    lstm_hidden: int = 256  # lstm: hidden units per direction
    lstm_embedding: int = 128  # lstm: token embedding width (the encoder's width with lstm_init=encoder)
    lstm_pooling: str = "max"  # lstm: max | mean over positions, or last (final forward/backward states)
    lstm_dropout: float = 0.1  # lstm: dropout between layers and before the head
    k1: float = 1.5  # bm25: term-frequency saturation
    b: float = 0.75  # bm25: document-length normalisation


PROBE_OPTIONS = frozenset({"max_train", "max_valid", "grid", "probe_iter"})
FINETUNE_OPTIONS = frozenset(
    {"batch_size", "max_length", "max_train", "max_valid", "epochs", "max_steps", "min_steps", "lr"}
    | {"warmup_ratio", "weight_decay", "eval_steps", "patience", "precision"}
)
LSTM_OPTIONS = FINETUNE_OPTIONS | {
    "lstm_init",
    "lstm_layers",
    "lstm_hidden",
    "lstm_embedding",
    "lstm_pooling",
    "lstm_dropout",
}
LSTM_INITS = ("random", "encoder")


def sample_rows(part: Labelled, cap: int) -> Labelled:
    """At most `cap` rows of `part` (0: all), a fixed seeded sample in the original order."""
    if not cap or len(part) <= cap:
        return part
    pick = np.sort(np.random.default_rng(0).choice(len(part), cap, replace=False))
    return Labelled([part.ids[i] for i in pick], [part.texts[i] for i in pick], part.targets[pick])


class Method:
    """Base: features -> probe for classification, features -> cosine for retrieval. Subclasses override
    `features` (and `search`, `classify` where they do something else)."""

    name = "method"
    kinds: tuple[str, ...] = ("protein", "text")  # the data it reads
    reads: frozenset[str] = PROBE_OPTIONS  # the MethodOptions it uses
    stochastic = False  # the probe and every baseline here are deterministic

    def __init__(self, options: MethodOptions | None = None) -> None:
        self.options = options or MethodOptions()
        self.last_fit: dict[str, Any] = {}  # what the last classify chose (probe C, ...), for the record
        # Where fine-tuning keeps its checkpoints, so that an interrupted fit resumes (`seqstruct curve`
        # points it into each cell); None: a temporary directory.
        self.work_dir: Path | None = None

    def describe(self) -> dict[str, Any]:
        """What produced the numbers: the method's name and the options it reads."""
        chosen = {name: value for name, value in asdict(self.options).items() if name in self.reads}
        return {"method": self.name, "options": chosen}

    def check_kind(self, kind: str) -> None:
        if kind not in self.kinds:
            raise NotApplicable(f"{self.name} reads {' or '.join(self.kinds)} data, not {kind}")

    def features(self, texts: Sequence[str], kind: str) -> Features:
        raise NotApplicable(f"{self.name} has no features to classify or embed with")

    def embed(self, texts: Sequence[str], kind: str, ids: Sequence[str] | None = None) -> np.ndarray:
        self.check_kind(kind)
        x = self.features(texts, kind)
        return x.toarray() if sp.issparse(x) else np.asarray(x)

    def search(self, queries: Sequence[str], corpus: Sequence[str], k: int, kind: str) -> np.ndarray:
        indices, _ = search(self.embed(queries, kind), self.embed(corpus, kind), k)
        return indices

    def split_features(self, problem: Classification) -> list[Features]:
        """Features of train, valid and each test split, in that order."""
        parts = [problem.train, problem.valid, *problem.tests.values()]
        return [self.features(part.texts, problem.kind) for part in parts]

    def classify(self, problem: Classification, seed: int) -> dict[str, np.ndarray]:
        self.check_kind(problem.kind)
        problem = capped(problem, self.options.max_train, self.options.max_valid)
        x_train, x_valid, *x_tests = self.split_features(problem)
        tests = dict(zip(problem.tests, x_tests, strict=True))
        train, valid = (x_train, problem.train.targets), (x_valid, problem.valid.targets)
        grid, iters = self.options.grid, self.options.probe_iter
        if problem.multilabel:
            scores, self.last_fit = multi_label_probe(train, valid, tests, grid, iters)
        else:
            scores, self.last_fit = single_label_probe(train, valid, tests, len(problem.classes), grid, iters)
        return scores


def capped(problem: Classification, cap: int, valid_cap: int = 0) -> Classification:
    """The problem with at most `cap` train rows and `valid_cap` valid rows (0: all), fixed seeded samples."""
    if cap and len(problem.train) > cap:
        logger.info("training on a fixed sample of %d of %d train rows (max_train)", cap, len(problem.train))
    if valid_cap and len(problem.valid) > valid_cap:
        logger.info(
            "validating on a fixed sample of %d of %d rows (max_valid)", valid_cap, len(problem.valid)
        )
    return replace(
        problem, train=sample_rows(problem.train, cap), valid=sample_rows(problem.valid, valid_cap)
    )
