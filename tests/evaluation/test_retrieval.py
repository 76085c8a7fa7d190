"""Exact search (faiss against brute force), TF-IDF and BM25 scores by hand, ranking metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from seqstruct.evaluation.retrieval import (
    BM25,
    WORD_PATTERN,
    blocked_search,
    dense_search,
    l2_normalize,
    ranking_metrics,
    tfidf_search,
)


def test_dense_search_equals_brute_force_cosine() -> None:
    rng = np.random.default_rng(0)
    corpus, queries = rng.normal(size=(300, 16)), rng.normal(size=(40, 16))
    indices, similarities = dense_search(queries, corpus * rng.uniform(0.5, 3, size=(300, 1)), k=7)
    cosine = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (
        corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    ).T  # [40, 300]; the corpus rescaling above must not matter
    expected = np.argsort(-cosine, axis=1)[:, :7]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(similarities, np.take_along_axis(cosine, expected, axis=1), atol=1e-5)
    assert dense_search(queries, corpus[:3], k=7)[0].shape == (40, 3)  # k capped at the corpus
    with pytest.raises(ValueError, match="share D"):
        dense_search(queries, corpus[:, :5], k=3)


def test_l2_normalize_leaves_zero_rows() -> None:
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_blocked_search_breaks_ties_by_corpus_order(monkeypatch) -> None:
    import seqstruct.evaluation.retrieval as retrieval

    monkeypatch.setattr(retrieval, "_BLOCK_ELEMENTS", 8)  # 2 queries per block over 4 documents
    scores = np.array([[1.0, 2.0, 2.0, 0.0], [0.0, 0.0, 0.0, 5.0], [3.0, 1.0, 3.0, 3.0]])
    indices, values = blocked_search(lambda rows: scores[rows], 3, 4, k=2)
    np.testing.assert_array_equal(indices, [[1, 2], [3, 0], [0, 2]])
    np.testing.assert_array_equal(values, [[2.0, 2.0], [5.0, 0.0], [3.0, 3.0]])


def test_tfidf_search_is_cosine_of_tfidf_vectors() -> None:
    corpus = ["kinase activity", "protein kinase binding", "ion channel activity", "membrane transport"]
    queries = ["kinase binding", "channel", "transport of ions across a membrane"]
    indices, cosines = tfidf_search(queries, corpus, k=4)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=WORD_PATTERN).fit(
        corpus
    )
    brute = (vectorizer.transform(queries) @ vectorizer.transform(corpus).T).toarray()  # [3, 4]
    np.testing.assert_allclose(cosines, np.take_along_axis(brute, indices, axis=1))
    assert indices[:, 0].tolist() == [1, 2, 3]


def test_bm25_by_hand() -> None:
    # Corpus of 3 documents, lengths 2, 3, 1: avgdl = 2; k1 = 1.5, b = 0.75.
    corpus = ["cat cat", "cat dog bird", "dog"]
    bm25 = BM25(corpus, k1=1.5, b=0.75)
    idf_cat = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))  # df(cat) = 2
    idf_dog = idf_cat  # df(dog) = 2
    idf_bird = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))  # df(bird) = 1

    def term(idf: float, f: int, length: int) -> float:
        return idf * f * 2.5 / (f + 1.5 * (1 - 0.75 + 0.75 * length / 2))

    scores = bm25.scores(["cat", "dog bird", "Cat cat", "fish"]).toarray()  # [4, 3]
    expected = np.array(
        [
            [term(idf_cat, 2, 2), term(idf_cat, 1, 3), 0.0],
            [0.0, term(idf_dog, 1, 3) + term(idf_bird, 1, 3), term(idf_dog, 1, 1)],
            [2 * term(idf_cat, 2, 2), 2 * term(idf_cat, 1, 3), 0.0],  # a repeated query word counts twice
            [0.0, 0.0, 0.0],  # an unknown word scores nothing
        ]
    )
    np.testing.assert_allclose(scores, expected)
    indices, values = bm25.search(["dog bird", "fish"], k=2)
    assert indices[0].tolist() == [1, 2] and indices[1].tolist() == [0, 1]  # "fish": all 0, corpus order
    np.testing.assert_allclose(values[0], expected[1, [1, 2]])
    with pytest.raises(ValueError, match="non-empty corpus"):
        BM25([])


def test_ranking_metrics_by_hand() -> None:
    indices = np.array([[4, 2, 7], [1, 0, 3], [5, 6, 8]])
    relevant = [[2], [1, 3], [9]]
    result = ranking_metrics(indices, relevant, ks=(1, 3), cutoff=3)
    # query 1: first hit at rank 2; query 2: rank 1 (and rank 3); query 3: none in the top 3
    assert result["mrr@3"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert result["recall@1"] == pytest.approx((0 + 1 / 2 + 0) / 3)
    assert result["recall@3"] == pytest.approx((1 + 1 + 0) / 3)
    ideal2 = 1 + 1 / math.log2(3)
    assert result["ndcg@3"] == pytest.approx((1 / math.log2(3) + (1 + 1 / math.log2(4)) / ideal2 + 0) / 3)
    with pytest.raises(ValueError, match="2 relevant sets for 3 queries"):
        ranking_metrics(indices, relevant[:2])
