"""Text retrieval: sparse term weights (TF-IDF cosine, Okapi BM25) searched exactly, and the ranking
metrics of any method's results.

Sparse scores are computed a block of queries at a time ([block, N] dense, never Q x N), and ranked by
`seqstruct.evaluation.search` (the one exact search of the package: most similar first, equal scores in
corpus order). Dense embeddings are searched there too (`search.search`).

`ranking_metrics` (MRR@k, nDCG@k, recall@k) follows sentence-transformers' InformationRetrievalEvaluator
definitions exactly; tests/evaluation/test_retrieval.py checks both give the same figures on one ranking.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from seqstruct.evaluation.metrics import first_relevant_rank, mrr, ndcg_at_k, recall_at_k
from seqstruct.evaluation.search import ranked, search

logger = logging.getLogger(__name__)

WORD_PATTERN = r"(?u)\b\w+\b"  # words of one character count too (sklearn's default drops them)


def tfidf_search(queries: Sequence[str], corpus: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    """TF-IDF cosine search (words and word bigrams, idf fitted on the corpus, sublinear tf):
    (indices [Q, k], cosines [Q, k])."""
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=WORD_PATTERN)
    documents = vectorizer.fit_transform(corpus)  # [N, V] rows L2-normalised
    asked = vectorizer.transform(queries)  # [Q, V]
    return search(asked, documents, k)


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
        return ranked(lambda rows: (asked[rows] @ self.weights).toarray(), len(queries), n, k)


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
