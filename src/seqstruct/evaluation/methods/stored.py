"""Stored embeddings as a method: a .npz of `seqstruct embed` (ids and embeddings), its vectors looked up
by record id. Anything that embeds records (kNN, links, the probe of a classification task) can then be
evaluated without a model: vectors computed elsewhere, or a model's embeddings computed once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seqstruct.evaluation.methods.base import Method, MethodOptions, NotApplicable
from seqstruct.evaluation.probe import Features
from seqstruct.evaluation.tasks import Classification

logger = logging.getLogger(__name__)

_SHOWN = 5  # ids quoted in an error before "..."


def load_embeddings(path: str | Path) -> tuple[list[str], np.ndarray, str | None]:
    """(ids, embeddings [N, D], pooling or None) from a .npz of `seqstruct embed`."""
    with np.load(path, allow_pickle=False) as npz:
        missing = {"ids", "embeddings"} - set(npz.files)
        if missing:
            raise ValueError(f"{path}: no {sorted(missing)} array (expected a .npz from `seqstruct embed`)")
        pooling = str(npz["pooling"]) if "pooling" in npz.files else None
        return [str(i) for i in npz["ids"]], npz["embeddings"], pooling


class StoredEmbeddings(Method):
    """The vectors of a .npz, by id: its ids must cover every record a task embeds (the rest are unused).
    Texts that are not records (a search query, a definition) have no stored vector: such tasks do not
    apply."""

    def __init__(self, path: str | Path, options: MethodOptions | None = None, name: str = "") -> None:
        super().__init__(options)
        self.path = Path(path)
        ids, vectors, self.pooling = load_embeddings(self.path)
        if vectors.ndim != 2 or len(ids) != len(vectors):
            raise ValueError(f"{path}: {len(ids)} ids for embeddings of shape {vectors.shape}")
        self.row = {node: i for i, node in enumerate(ids)}
        if len(self.row) != len(ids):
            raise ValueError(f"{path}: embedding ids must be unique")
        self.vectors = vectors
        self.name = name or str(path)

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"path": str(self.path), "pooling": self.pooling}

    def lookup(self, ids: Sequence[str] | None) -> np.ndarray:
        """[N, D] the stored vectors of `ids`, in their order."""
        if ids is None:
            raise NotApplicable(f"{self.name} holds vectors of records by id; these texts are not records")
        missing = [node for node in ids if node not in self.row]
        if missing:
            shown = ", ".join(repr(i) for i in missing[:_SHOWN]) + (" ..." if len(missing) > _SHOWN else "")
            raise ValueError(f"{self.path}: no embedding for {len(missing)} records, {shown}")
        unused = len(self.row) - len(set(ids))
        if unused > 0:
            logger.info(
                "%s: %d embeddings are not among the %d records asked for", self.path, unused, len(ids)
            )
        return np.asarray(self.vectors)[[self.row[node] for node in ids]]

    def embed(self, texts: Sequence[str], kind: str, ids: Sequence[str] | None = None) -> np.ndarray:
        return self.lookup(ids)

    def search(self, queries: Sequence[str], corpus: Sequence[str], k: int, kind: str) -> np.ndarray:
        raise NotApplicable(f"{self.name} holds vectors of records by id; it cannot embed a query")

    def split_features(self, problem: Classification) -> list[Features]:
        parts = [problem.train, problem.valid, *problem.tests.values()]
        return [self.lookup(part.ids) for part in parts]
