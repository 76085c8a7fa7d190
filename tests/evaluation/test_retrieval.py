"""TF-IDF and BM25 scores by hand, ranking metrics (by hand and against sentence-transformers'
InformationRetrievalEvaluator on the exact search's rankings). The search itself: test_search.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
from sentence_transformers.util import cos_sim
from sklearn.feature_extraction.text import TfidfVectorizer

from seqstruct.evaluation.retrieval import BM25, WORD_PATTERN, ranking_metrics, tfidf_search
from seqstruct.evaluation.search import search


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


def test_search_and_metrics_reproduce_the_evaluator_end_to_end() -> None:
    rng = np.random.default_rng(1)
    queries, corpus = rng.normal(size=(6, 8)), rng.normal(size=(25, 8))  # no ties among cosines
    relevant = [[0], [1, 2], [3, 4, 5], [6], [7, 8], [24]]
    found, _ = search(queries, corpus, 10)  # [6, 10]
    ours = ranking_metrics(found, relevant, ks=(1, 5, 10), cutoff=10)
    evaluator = _ir_evaluator(len(queries), len(corpus), relevant)
    theirs = _ir_figures(evaluator(_FixedVectors(queries, corpus)), prefix="cosine_")
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, abs=1e-9), name
