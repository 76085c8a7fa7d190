"""Exact top-k search of a corpus for each query: dense embeddings (faiss) and sparse term weights
(TF-IDF cosine, Okapi BM25), and the ranking metrics of the results.

Dense search is exact inner product on L2-normalised vectors, i.e. cosine similarity, with faiss's
`IndexFlatIP`: exhaustive, so the numbers depend on the embeddings only, never on an index's approximation.
Sparse scores are computed a block of queries at a time ([block, N] dense, never Q x N), and ranked with
`seqstruct.evaluation.structure.top_k`: most similar first, equal scores in corpus order. `cosine_search`
takes either kind of vectors, and `knn_vote` turns its neighbours into a class (kNN classification).

`ranking_metrics` (MRR@k, nDCG@k, recall@k) follows sentence-transformers' InformationRetrievalEvaluator
definitions exactly; tests/evaluation/test_retrieval.py checks both give the same figures on one ranking.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence

import faiss
import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.preprocessing import normalize

from seqstruct.evaluation.metrics import first_relevant_rank, mrr, ndcg_at_k, recall_at_k
from seqstruct.evaluation.structure import top_k

logger = logging.getLogger(__name__)

_BLOCK_ELEMENTS = 2**24  # dense scores held at once (128 MiB of float64)
WORD_PATTERN = r"(?u)\b\w+\b"  # words of one character count too (sklearn's default drops them)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """[N, D] float32 rows scaled to unit length; a zero row stays zero (it has no direction)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # [N, 1]
    return x / np.where(norms > 0, norms, 1.0)


def dense_search(queries: np.ndarray, corpus: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine search: (indices [Q, k] into `corpus`, similarities [Q, k]), most similar first.

    queries [Q, D] and corpus [N, D] are normalised here; k is capped at N.
    """
    if queries.ndim != 2 or corpus.ndim != 2 or queries.shape[1] != corpus.shape[1]:
        raise ValueError(
            f"queries [Q, D] and corpus [N, D] must share D; got {queries.shape}, {corpus.shape}"
        )
    index = faiss.IndexFlatIP(corpus.shape[1])
    index.add(l2_normalize(corpus))
    similarities, indices = index.search(l2_normalize(queries), min(k, len(corpus)))  # [Q, k] each
    return indices.astype(np.int64), similarities


def blocked_search(
    score: Callable[[slice], np.ndarray], n_queries: int, n_corpus: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top k of scores computed a block of queries at a time: score(slice of queries) -> [B, N] dense.
    Returns (indices [Q, k], scores [Q, k]), best first, ties in corpus order."""
    k = min(k, n_corpus)
    block = max(1, _BLOCK_ELEMENTS // max(n_corpus, 1))
    indices = np.empty((n_queries, k), dtype=np.int64)
    values = np.empty((n_queries, k), dtype=np.float64)
    for start in range(0, n_queries, block):
        rows = slice(start, min(start + block, n_queries))
        indices[rows], values[rows] = top_k(np.asarray(score(rows), dtype=np.float64), k)
    return indices, values


def cosine_search(
    queries: np.ndarray | sp.spmatrix, corpus: np.ndarray | sp.spmatrix, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine search over dense vectors (`dense_search`) or sparse term weights (TF-IDF rows, scored a
    block of queries at a time, ties in corpus order): (indices [Q, k], cosines [Q, k])."""
    if not (sp.issparse(queries) or sp.issparse(corpus)):
        return dense_search(np.asarray(queries), np.asarray(corpus), k)
    if queries.shape[1] != corpus.shape[1]:
        raise ValueError(
            f"queries [Q, D] and corpus [N, D] must share D; got {queries.shape}, {corpus.shape}"
        )
    asked = normalize(sp.csr_matrix(queries, dtype=np.float64))  # [Q, D], zero rows stay zero
    documents = normalize(sp.csr_matrix(corpus, dtype=np.float64))  # [N, D]

    def score(rows: slice) -> np.ndarray:
        return (asked[rows] @ documents.T).toarray()  # [B, N]

    return blocked_search(score, asked.shape[0], documents.shape[0], k)


def knn_vote(
    neighbours: np.ndarray, similarities: np.ndarray, labels: np.ndarray, n_classes: int
) -> np.ndarray:
    """[Q] class of each query by majority vote of its k nearest neighbours (neighbours [Q, k] indices into
    labels [N], similarities [Q, k] their cosines). A tie goes to the tied class whose neighbours are
    closer in sum, then to the lower class index.

    >>> knn_vote(np.array([[0, 1, 2]]), np.array([[0.9, 0.8, 0.7]]), np.array([1, 0, 0]), 2)
    array([0])
    """
    if neighbours.shape != similarities.shape or neighbours.ndim != 2:
        raise ValueError(
            f"neighbours and similarities must be [Q, k] of one shape; got {neighbours.shape}, "
            f"{similarities.shape}"
        )
    classes = np.asarray(labels)[neighbours]  # [Q, k]
    rows = np.repeat(np.arange(len(classes)), classes.shape[1])  # [Q * k]
    votes = np.zeros((len(classes), n_classes))  # [Q, C]
    closeness = np.zeros((len(classes), n_classes))  # [Q, C] summed cosine of each class's neighbours
    np.add.at(votes, (rows, classes.ravel()), 1.0)
    np.add.at(closeness, (rows, classes.ravel()), similarities.ravel())
    tied = votes == votes.max(axis=1, keepdims=True)  # [Q, C]
    return np.where(tied, closeness, -np.inf).argmax(axis=1)  # argmax: the first of equal maxima


def tfidf_search(queries: Sequence[str], corpus: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """TF-IDF cosine search (words and word bigrams, idf fitted on the corpus, sublinear tf):
    (indices [Q, k], cosines [Q, k])."""
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=WORD_PATTERN)
    documents = vectorizer.fit_transform(corpus)  # [N, V] rows L2-normalised
    asked = vectorizer.transform(queries)  # [Q, V]
    return blocked_search(lambda rows: (asked[rows] @ documents.T).toarray(), len(queries), len(corpus), k)


class BM25:
    """Okapi BM25 over a fixed corpus (Robertson & Zaragoza 2009), with Lucene's non-negative idf:

        score(q, d) = sum over query words t of  c(t, q) · idf(t) · f(t, d) (k1 + 1) / (f(t, d) + k1 B(d))
        idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5)),   B(d) = 1 - b + b |d| / avgdl

    f(t, d) is the count of t in document d, |d| its length in words, c(t, q) the count of t in the
    query (a repeated query word counts again, as in rank_bm25). Words are lower-cased runs of word
    characters; query words outside the corpus contribute nothing.

    >>> BM25(["a cat", "a dog"]).scores(["cat"]).toarray().round(3)
    array([[0.693, 0.   ]])
    """

    def __init__(self, corpus: Sequence[str], k1: float = 1.5, b: float = 0.75) -> None:
        if not len(corpus):
            raise ValueError("BM25 needs a non-empty corpus")
        self.k1, self.b = k1, b
        self.vectorizer = CountVectorizer(token_pattern=WORD_PATTERN, lowercase=True)
        counts = self.vectorizer.fit_transform(corpus).tocsr().astype(np.float64)  # [N, V]
        n = counts.shape[0]
        lengths = np.asarray(counts.sum(axis=1)).ravel()  # [N] words per document
        df = np.bincount(counts.indices, minlength=counts.shape[1])  # [V] documents holding each word
        self.idf = np.log1p((n - df + 0.5) / (df + 0.5))  # [V]
        # The document side depends on (t, d) only: precompute it on the nonzeros of `counts`.
        norm = self.k1 * (1.0 - b + b * lengths / lengths.mean())  # [N]
        rows = np.repeat(np.arange(n), np.diff(counts.indptr))  # [nnz] document of each nonzero
        f = counts.data
        weights = counts.copy()
        weights.data = self.idf[counts.indices] * f * (self.k1 + 1.0) / (f + norm[rows])
        self.weights = weights.T.tocsr()  # [V, N]

    def scores(self, queries: Sequence[str]) -> sp.csr_matrix:
        """[Q, N] sparse BM25 scores of every document for each query."""
        asked = self.vectorizer.transform(queries).astype(np.float64)  # [Q, V] word counts
        return (asked @ self.weights).tocsr()

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices [Q, k], scores [Q, k]): the k best documents per query, ties in corpus order."""
        asked = self.vectorizer.transform(queries).astype(np.float64)  # [Q, V]
        n = self.weights.shape[1]
        return blocked_search(lambda rows: (asked[rows] @ self.weights).toarray(), len(queries), n, k)


def ranking_metrics(
    indices: np.ndarray,
    relevant: Sequence[Collection[int]],
    ks: Sequence[int] = (1, 5, 10),
    cutoff: int = 10,
) -> dict[str, float]:
    """mrr@cutoff, ndcg@cutoff and recall@k of rankings indices [Q, K] (K >= max(ks, cutoff), or the
    whole corpus) against each query's relevant corpus indices (at least one each)."""
    if len(relevant) != len(indices):
        raise ValueError(f"{len(relevant)} relevant sets for {len(indices)} queries")
    hit = np.array(
        [np.isin(row, np.fromiter(rel, dtype=np.int64)) for row, rel in zip(indices, relevant, strict=True)],
        dtype=bool,
    ).reshape(indices.shape)  # [Q, K]
    counts = np.array([len(set(rel)) for rel in relevant], dtype=np.float64)  # [Q]
    result = {
        f"mrr@{cutoff}": mrr(first_relevant_rank(hit), cutoff),
        f"ndcg@{cutoff}": ndcg_at_k(hit, cutoff, counts),
    }
    for k in ks:
        result[f"recall@{k}"] = recall_at_k(hit, k, counts)
    return result
