"""Graded similarity of GO definitions: Spearman and Pearson of the method's cosine against Lin
similarity over the GO is_a DAG."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from seqstruct.data.prepared import Prepared
from seqstruct.data.sources.go import resolve_go_path
from seqstruct.evaluation.similarity import (
    EmbeddingFunctionModel,
    go_lin_similarity,
    sample_pairs,
    similarity_correlations,
)
from seqstruct.evaluation.tasks.registry import Method, TaskResult, register_task, split_column

logger = logging.getLogger(__name__)


def go_source(data: Prepared, given: str | Path = "") -> Path:
    """The GO SQLite to read the full is_a DAG from for a prepared go-text dataset: `given`, else the file
    the recipe read (the dataset's config.go_sqlite) where it still is, else where the recipe looks
    (`resolve_go_path`: $SEQSTRUCT_GO_SQLITE, data/external/GO.sqlite)."""
    if given:
        return resolve_go_path(given)
    recorded = data.info.config.get("go_sqlite")
    if recorded and Path(recorded).is_file():
        return Path(recorded)
    if recorded:
        logger.info(
            "%s: the GO SQLite it was prepared from (%s) is gone; looking elsewhere", data.path, recorded
        )
    return resolve_go_path(None)


@register_task("go-similarity", dataset="go-text", kind="text")
class GoSimilarityTask:
    """Graded similarity of GO definitions: `pairs` pairs of terms of `split` (half sharing a parent or
    grandparent, half random within a namespace; `seqstruct.evaluation.similarity.sample_pairs`), gold
    score Lin similarity with intrinsic IC; Spearman and Pearson of the method's cosine between the two
    definitions, computed by sentence-transformers' EmbeddingSimilarityEvaluator.

    Lin needs the whole is_a DAG, and a prepared go-text dataset does not hold it: graph.tsv keeps only
    edges between terms with a definition, undirected, and only those inside train (held-out terms' edges
    are in graph_heldout.tsv). The DAG is therefore read from the GO SQLite the dataset was prepared from
    (`go_source`; go_sqlite=PATH to name one), every term counted. Each term of `split` must be in it with
    the same definition, or the task stops: another GO release would score other pairs.
    """

    def __init__(
        self,
        split: str = "test",
        pairs: int = 2000,
        sample_seed: int = 0,
        related_fraction: float = 0.5,
        go_sqlite: str = "",
    ) -> None:
        if pairs < 2:
            raise ValueError(f"pairs must be at least 2 (a correlation); got {pairs}")
        self.split, self.pairs, self.sample_seed = split, pairs, sample_seed
        self.related_fraction, self.go_sqlite = related_fraction, go_sqlite

    def run(self, data: Prepared, method: Method, seed: int) -> TaskResult:
        path = go_source(data, self.go_sqlite)
        go, lin = go_lin_similarity(path)
        texts = dict(
            zip(split_column(data, self.split, "id"), split_column(data, self.split, "text"), strict=True)
        )
        for term, text in texts.items():
            found = go.terms.get(term)
            if found is None or (found.definition or "").strip() != text:
                what = "has no term" if found is None else "defines differently"
                raise ValueError(
                    f"{path} {what} {term} of {data.path} (split {self.split!r}): not the GO release the "
                    "dataset was prepared from; give that GO.sqlite as go_sqlite=PATH"
                )
        pairs = sample_pairs(lin, texts, self.pairs, self.sample_seed, self.related_fraction)
        if len(pairs) < 2:
            raise ValueError(f"{data.path}: split {self.split!r} gives {len(pairs)} term pair(s); need 2")
        model = EmbeddingFunctionModel(lambda batch: method.embed(batch, data.info.kind))
        metrics = similarity_correlations(model, pairs)
        scores = np.asarray(pairs.scores)
        counts = {
            "pairs": len(pairs),
            "related_pairs": pairs.kinds.count("related"),
            "terms": len(pairs.texts()),
            "lin_mean": float(scores.mean()),
            "lin_zero": int((scores == 0.0).sum()),
            "ontology": str(path),
            "ontology_terms": len(go.terms),
        }
        return TaskResult({self.split: metrics}, counts)
