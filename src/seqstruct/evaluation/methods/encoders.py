"""A saved encoder as a method: frozen pooled embeddings (probe, cosine) or fine-tuned with a
classification head; and `lstm:DIR`, a BiLSTM trained from scratch with DIR's tokenizer.

Embeddings are memoised in process, per Encoder: text -> pooled vector. One Encoder is one (model,
pooling, max_length, precision), so the memo needs no other key, and every caller that evaluates a model
evaluates all its tasks through one Encoder: `seqstruct evaluate` builds it once for all --task names
(go-mf, go-mf-class and protein-link read the same proteins), `seqstruct compare` (and the demo) calls
evaluate once per cell with all tasks, `seqstruct curve` builds one per arm for all its fractions and
seeds. So no protein is embedded twice (tests/evaluation/test_methods.py counts the encoder's calls),
without an on-disk cache whose key would have to identify a model directory's weights; a run that is
interrupted mid-cell embeds that cell again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqstruct.data.prepared import KINDS
from seqstruct.evaluation.finetune import finetune
from seqstruct.evaluation.methods.base import (
    FINETUNE_OPTIONS,
    LSTM_INITS,
    LSTM_OPTIONS,
    MODES,
    PROBE_OPTIONS,
    Method,
    MethodOptions,
    NotApplicable,
    capped,
)
from seqstruct.evaluation.tasks import Classification
from seqstruct.models.encoders import SEQUENCE_KIND
from seqstruct.models.io import model_names

logger = logging.getLogger(__name__)


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
        self.kind = encoder_kind(self.model_dir)
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
        from seqstruct.models.embed import saved_pooling
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
        from seqstruct.models.embed import encode, load_encoder, load_pooling
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
        problem = capped(problem, self.options.max_train, self.options.max_valid)
        scores, self.last_fit = finetune(
            self.model_dir, problem, seed, self.options, self._max_length, work_dir=self.work_dir
        )
        return scores


def encoder_kind(model_dir: Path) -> str:
    """protein | text: what the model encodes, as its config.json says (`sequence_kind`, which every
    model seqstruct builds or pretrains records); for a model saved elsewhere without it, protein when
    its tokenizer is character-level over the residue letters (a few dozen tokens), text otherwise."""
    import json

    from transformers import AutoTokenizer

    from seqstruct.data.fasta import STANDARD_RESIDUES

    said = json.loads((model_dir / "config.json").read_text(encoding="utf-8")).get(SEQUENCE_KIND)
    if said is not None:
        if said not in KINDS:
            raise ValueError(f"{model_dir}/config.json: {SEQUENCE_KIND} must be one of {KINDS}; got {said!r}")
        return said
    vocab = AutoTokenizer.from_pretrained(model_dir).get_vocab()
    kind = "protein" if len(vocab) <= 64 and all(r in vocab for r in STANDARD_RESIDUES) else "text"
    logger.info("%s: config.json names no %s; taken as %s from its tokenizer", model_dir, SEQUENCE_KIND, kind)
    return kind


class Lstm(Method):
    """`lstm:DIR`: a BiLSTM classifier trained from scratch (`seqstruct.models.lstm`) with DIR's tokenizer;
    lstm_init=encoder copies DIR's encoder's token embeddings into it (embedding width = the encoder's)."""

    reads = LSTM_OPTIONS
    stochastic = True

    def __init__(self, model_dir: str | Path, options: MethodOptions | None = None, name: str = "") -> None:

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
        self.kind = encoder_kind(self.model_dir)
        self.kinds = (self.kind,)

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"mode": "finetune", "kind": self.kind, "path": str(self.model_dir)}

    def embed(self, texts: Sequence[str], kind: str, ids: Sequence[str] | None = None) -> np.ndarray:
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
        problem = capped(problem, self.options.max_train, self.options.max_valid)
        scores, self.last_fit = finetune(
            self.model_dir, problem, seed, self.options, self._max_length, self.build, self.work_dir
        )
        return scores
