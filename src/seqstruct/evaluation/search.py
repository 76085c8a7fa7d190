"""Exact similarity search, a block of queries at a time: the one search every task and method uses.

Scores are float64 and computed a block of query rows at a time ([block, N], never Q x N), so 100k
vectors fit in memory. Nearest means most similar: cosine similarity (a zero vector has cosine 0 with
everything: it has no direction), or the negated Euclidean distance, so that larger is nearer for both.
Dense vectors and sparse term weights (TF-IDF rows) are both searched exactly, never approximately.

Rankings are deterministic: equal scores are ordered by corpus index (lower first), also where a tie
straddles the k-th place (`top_k`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

METRICS = ("cosine", "euclidean")
_BLOCK_ELEMENTS = 2**24  # scores held at once by default (128 MiB of float64)
_SHOWN = 5  # rows quoted in an error before "..."

Vectors = np.ndarray | sp.spmatrix
Score = Callable[[slice], np.ndarray]  # score(slice of query rows) -> [B, N] float64


def _checked(x: Vectors, metric: str) -> Vectors:
    """[N, D] float64, checked (2-D, finite); the metric name checked too."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    if sp.issparse(x):
        if metric != "cosine":
            raise ValueError("sparse vectors (term weights) are compared by cosine only")
        x = sp.csr_matrix(x, dtype=np.float64)
        finite = np.isfinite(x.data).all()
    else:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"vectors must be [N, D], got shape {x.shape}")
        finite = np.isfinite(x).all()
    if not finite:
        dense = x.toarray() if sp.issparse(x) else x
        bad = np.flatnonzero(~np.isfinite(dense).all(axis=1))
        raise ValueError(f"{len(bad)} vectors are not finite, first rows {bad[:_SHOWN].tolist()}")
    return x


def similarities(queries: Vectors, corpus: Vectors, metric: str = "cosine") -> Score:
    """A function from a slice of query rows to their similarities [B, N] to every corpus row."""
    q, c = _checked(queries, metric), _checked(corpus, metric)
    if q.shape[1] != c.shape[1]:
        raise ValueError(f"queries [Q, D] and corpus [N, D] must share D; got {q.shape}, {c.shape}")
    if metric == "cosine":
        q, c = normalize(q), normalize(c)  # zero rows stay zero
        if sp.issparse(q) or sp.issparse(c):
            q, c = sp.csr_matrix(q), sp.csr_matrix(c)
            return lambda rows: (q[rows] @ c.T).toarray()
        return lambda rows: q[rows] @ c.T
    squares = np.einsum("nd,nd->n", c, c)  # [N]

    def negated_distance(rows: slice) -> np.ndarray:
        # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, clipped where rounding makes it slightly negative.
        block = q[rows]  # [B, D]
        distances = np.einsum("bd,bd->b", block, block)[:, None] + squares[None, :] - 2.0 * block @ c.T
        return -np.sqrt(np.maximum(distances, 0.0))  # [B, N]

    return negated_distance


def blocks(n_queries: int, n_corpus: int, block_size: int | None = None) -> Iterator[slice]:
    """Slices of at most `block_size` query rows (default: 2^24 scores a block)."""
    block = block_size or max(1, _BLOCK_ELEMENTS // max(n_corpus, 1))
    for start in range(0, n_queries, block):
        yield slice(start, min(start + block, n_queries))


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """scores [B, N] (-inf: not a candidate) -> (indices [B, k], scores [B, k]), best first; equal scores
    in index order, also where a tie straddles the k-th place."""
    _, n = scores.shape
    if not 0 < k <= n:
        raise ValueError(f"k={k} must be between 1 and the {n} candidates")
    picked = np.argpartition(scores, n - k, axis=1)[:, n - k :]  # [B, k] the k largest, unordered
    kth = np.take_along_axis(scores, picked, axis=1).min(axis=1)  # [B]
    # argpartition chooses arbitrarily among values equal to the k-th; redo those rows by index order.
    straddling = np.flatnonzero((scores >= kth[:, None]).sum(axis=1) > k)
    for row in straddling:
        above = np.flatnonzero(scores[row] > kth[row])
        level = np.flatnonzero(scores[row] == kth[row])[: k - len(above)]
        picked[row] = np.concatenate([above, level])
    values = np.take_along_axis(scores, picked, axis=1)  # [B, k]
    order = np.lexsort((picked, -values), axis=1)  # by score descending, then index
    return np.take_along_axis(picked, order, axis=1), np.take_along_axis(values, order, axis=1)


def ranked(
    score: Score, n_queries: int, n_corpus: int, k: int, block_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The top k of blocked scores (`score(slice)` -> [B, N]): (indices [Q, k], scores [Q, k]), best
    first, ties in corpus order; k is capped at the corpus."""
    k = min(k, n_corpus)
    indices = np.empty((n_queries, k), dtype=np.int64)
    values = np.empty((n_queries, k), dtype=np.float64)
    for rows in blocks(n_queries, n_corpus, block_size):
        indices[rows], values[rows] = top_k(np.asarray(score(rows), dtype=np.float64), k)
    return indices, values


def search(
    queries: Vectors, corpus: Vectors, k: int, metric: str = "cosine", block_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact search of dense vectors or sparse term weights: (indices [Q, k] into `corpus`, similarities
    [Q, k]), most similar first, ties in corpus order; k is capped at the corpus."""
    score = similarities(queries, corpus, metric)
    return ranked(score, queries.shape[0], corpus.shape[0], k, block_size)


def nearest_neighbours(
    vectors: Vectors, k: int, metric: str = "cosine", block_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k nearest other rows: (indices [N, k], similarities [N, k]), nearest first."""
    n = vectors.shape[0]
    if not 0 < k < n:
        raise ValueError(f"k={k} must be between 1 and N-1={n - 1}")
    score = similarities(vectors, vectors, metric)

    def others(rows: slice) -> np.ndarray:
        block = score(rows)  # [B, N]
        block[np.arange(block.shape[0]), np.arange(rows.start, rows.stop)] = -np.inf  # never itself
        return block

    return ranked(others, n, n, k, block_size)
