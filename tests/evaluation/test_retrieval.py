"""Exact search (faiss against brute force), TF-IDF and BM25 scores by hand, ranking metrics (by hand and
against sentence-transformers' InformationRetrievalEvaluator), kNN votes on a tiny 2-D set."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
from sentence_transformers.util import cos_sim
from sklearn.feature_extraction.text import TfidfVectorizer

from seqstruct.evaluation.retrieval import (
    BM25,
    WORD_PATTERN,
    blocked_search,
    cosine_search,
    dense_search,
    knn_vote,
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


# ---------------------------------------------------------------------------------------------------
# The field's figures: sentence-transformers' InformationRetrievalEvaluator on the same rankings
# ---------------------------------------------------------------------------------------------------

IR_METRICS = {"mrr@10": "mrr@k", "ndcg@10": "ndcg@k", "recall@1": "recall@k", "recall@5": "recall@k"}
IR_METRICS |= {"recall@10": "recall@k"}


def _ir_evaluator(n_queries: int, n_corpus: int, relevant: list[list[int]]) -> InformationRetrievalEvaluator:
    return InformationRetrievalEvaluator(
        queries={f"q{i}": f"query {i}" for i in range(n_queries)},
        corpus={f"d{j:02d}": f"document {j}" for j in range(n_corpus)},
        relevant_docs={f"q{i}": {f"d{j:02d}" for j in rel} for i, rel in enumerate(relevant)},
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[1],
        precision_recall_at_k=[1, 5, 10],
        map_at_k=[10],
        write_csv=False,
    )


def _ir_figures(found: dict, prefix: str = "") -> dict[str, float]:
    """Our metric names -> the evaluator's values (from compute_metrics' nested dict, or __call__'s flat one)."""
    if prefix:
        return {ours: float(found[f"{prefix}{ours}"]) for ours in IR_METRICS}
    return {ours: float(found[theirs][int(ours.split("@")[1])]) for ours, theirs in IR_METRICS.items()}


def test_ranking_metrics_agree_with_information_retrieval_evaluator() -> None:
    rng = np.random.default_rng(0)
    n_queries, n_corpus, depth = 8, 30, 20
    ranking = np.stack([rng.permutation(n_corpus)[:depth] for _ in range(n_queries)])  # [Q, 20]
    # relevant sets of 1 to 12 items: hits at the top, deep, beyond rank 10, beyond the ranking, or none
    relevant = [
        sorted(rng.choice(n_corpus, size, replace=False).tolist()) for size in (1, 1, 2, 3, 5, 8, 12, 1)
    ]
    relevant[0] = [int(ranking[0, 0])]  # a hit at rank 1
    relevant[7] = [int(ranking[7, 15])]  # the only relevant item at rank 16: zero at every cutoff here
    ours = ranking_metrics(ranking, relevant, ks=(1, 5, 10), cutoff=10)
    # the same rankings as the evaluator's per-query hit lists: scores falling with the rank
    hits = [
        [{"corpus_id": f"d{j:02d}", "score": float(depth - r)} for r, j in enumerate(row)] for row in ranking
    ]
    theirs = _ir_figures(_ir_evaluator(n_queries, n_corpus, relevant).compute_metrics(hits))
    assert set(ours) == set(theirs)
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, abs=1e-12), name
    assert 0.0 < ours["ndcg@10"] < 1.0 and ours["recall@1"] > 0.0  # not a degenerate case


class _FixedVectors:
    """A stand-in for a SentenceTransformer: what InformationRetrievalEvaluator calls, with fixed vectors."""

    similarity_fn_name = "cosine"

    def __init__(self, queries: np.ndarray, corpus: np.ndarray) -> None:
        self.vectors = {f"query {i}": v for i, v in enumerate(queries)}
        self.vectors |= {f"document {j}": v for j, v in enumerate(corpus)}
        self.model_card_data = self

    def set_evaluation_metrics(self, *args, **kwargs) -> None:
        pass

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return cos_sim(a, b)

    def encode_query(self, texts, **kwargs) -> torch.Tensor:
        return torch.tensor(np.stack([self.vectors[t] for t in texts]))

    encode_document = encode_query


def test_dense_search_and_metrics_reproduce_the_evaluator_end_to_end() -> None:
    rng = np.random.default_rng(1)
    queries, corpus = rng.normal(size=(6, 8)), rng.normal(size=(25, 8))  # no ties among cosines
    relevant = [[0], [1, 2], [3, 4, 5], [6], [7, 8], [24]]
    found, _ = dense_search(queries, corpus, 10)  # [6, 10]
    ours = ranking_metrics(found, relevant, ks=(1, 5, 10), cutoff=10)
    evaluator = _ir_evaluator(len(queries), len(corpus), relevant)
    theirs = _ir_figures(evaluator(_FixedVectors(queries, corpus)), prefix="cosine_")
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, abs=1e-9), name


# ---------------------------------------------------------------------------------------------------
# Sparse cosine search and kNN
# ---------------------------------------------------------------------------------------------------


def test_cosine_search_on_sparse_rows_equals_dense() -> None:
    rng = np.random.default_rng(2)
    corpus = rng.random((12, 30)) * (rng.random((12, 30)) < 0.2)  # mostly zeros, like TF-IDF rows
    queries = rng.random((4, 30)) * (rng.random((4, 30)) < 0.3)
    dense = cosine_search(queries, corpus, 5)
    sparse = cosine_search(sp.csr_matrix(queries), sp.csr_matrix(corpus), 5)
    np.testing.assert_allclose(sparse[1], dense[1], atol=1e-6)
    assert (sparse[0] == dense[0])[dense[1] > 1e-6].all()  # same order wherever scores are not 0 ties
    with pytest.raises(ValueError, match="must share D"):
        cosine_search(sp.csr_matrix(queries), sp.csr_matrix(corpus[:, :5]), 5)


# A tiny 2-D set: classes 0 (near the x axis), 1 (near the y axis), 2 (the negative x axis).
TRAIN = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
LABELS = np.array([0, 0, 1, 1, 2])
QUERIES = np.array([[1.0, 0.2], [0.2, 1.0], [-1.0, 0.1], [0.75, 0.7]])


def test_knn_on_a_tiny_2d_set_by_hand() -> None:
    def predict(k: int) -> list[int]:
        found, cosines = cosine_search(QUERIES, TRAIN, k)
        return knn_vote(found, cosines, LABELS, 3).tolist()

    # cosines of query 3 (-1, 0.1): class-2 point 0.995, (0, 1) 0.0995, (0.1, 0.9) -0.011, ...
    assert predict(1) == [0, 1, 2, 0]  # each nearest point's class
    # k = 3: q1 -> (0.9, 0.1) 0.996, (1, 0) 0.981, (0.1, 0.9) 0.303: class 0 by 2 votes to 1; q2 the mirror
    # image; q3 -> one class-2 and two class-1 points: class 1 outvotes the nearest point
    assert predict(3) == [0, 1, 1, 0]
    # k = 2, q4 (0.75, 0.7): (0.9, 0.1) 0.802 and (0.1, 0.9) 0.759, one vote each: the closer class 0
    assert predict(2)[3] == 0


def test_knn_vote_ties_go_to_the_closer_class_then_the_lower_index() -> None:
    neighbours = np.array([[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, 3]])
    similarities = np.array([[0.9, 0.8, 0.7, 0.1], [0.5, 0.5, 0.5, 0.5], [0.3, 0.2, 0.1, 0.9]])
    labels = np.array([2, 1, 1, 2])  # two votes each for classes 1 and 2
    # row 1: class 2 sums 1.0, class 1 1.5 -> 1; row 2: equal sums -> 1 (lower index); row 3: class 2
    # sums 1.2, class 1 0.3 -> 2
    assert knn_vote(neighbours, similarities, labels, 3).tolist() == [1, 1, 2]
    assert knn_vote(neighbours[:1, :1], similarities[:1, :1], labels, 3).tolist() == [2]
    with pytest.raises(ValueError, match="one shape"):
        knn_vote(neighbours, similarities[:, :2], labels, 3)
