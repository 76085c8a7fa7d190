"""The one exact search: against brute force, dense and sparse alike, ties in index order (also across
the k-th place and across blocks), cosine against Euclidean, a row never its own neighbour."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import seqstruct.evaluation.search as search_module
from seqstruct.evaluation.search import nearest_neighbours, ranked, search, top_k


def _line(*xs: float) -> np.ndarray:
    """Points on the x axis of the plane: [N, 2]."""
    return np.array([[x, 0.0] for x in xs])


def test_search_equals_brute_force_cosine() -> None:
    rng = np.random.default_rng(0)
    corpus, queries = rng.normal(size=(300, 16)), rng.normal(size=(40, 16))
    indices, similarities = search(queries, corpus * rng.uniform(0.5, 3, size=(300, 1)), k=7)
    cosine = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ (
        corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    ).T  # [40, 300]; the corpus rescaling above must not matter
    expected = np.argsort(-cosine, axis=1)[:, :7]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(similarities, np.take_along_axis(cosine, expected, axis=1), atol=1e-12)
    assert search(queries, corpus[:3], k=7)[0].shape == (40, 3)  # k capped at the corpus
    with pytest.raises(ValueError, match="share D"):
        search(queries, corpus[:, :5], k=3)


def test_zero_vectors_have_cosine_zero_with_everything() -> None:
    indices, similarities = search(np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([[0.6, 0.8], [0.0, 0.0]]), 2)
    np.testing.assert_allclose(similarities, [[0.0, 0.0], [1.0, 0.0]])
    assert indices.tolist() == [[0, 1], [0, 1]]  # the zero query's tie: corpus order


def test_ranked_breaks_ties_by_corpus_order_across_blocks(monkeypatch) -> None:
    monkeypatch.setattr(search_module, "_BLOCK_ELEMENTS", 8)  # 2 queries per block over 4 documents
    scores = np.array([[1.0, 2.0, 2.0, 0.0], [0.0, 0.0, 0.0, 5.0], [3.0, 1.0, 3.0, 3.0]])
    indices, values = ranked(lambda rows: scores[rows], 3, 4, k=2)
    np.testing.assert_array_equal(indices, [[1, 2], [3, 0], [0, 2]])
    np.testing.assert_array_equal(values, [[2.0, 2.0], [5.0, 0.0], [3.0, 3.0]])


def test_sparse_rows_search_as_dense() -> None:
    rng = np.random.default_rng(2)
    corpus = rng.random((12, 30)) * (rng.random((12, 30)) < 0.2)  # mostly zeros, like TF-IDF rows
    queries = rng.random((4, 30)) * (rng.random((4, 30)) < 0.3)
    dense = search(queries, corpus, 5)
    sparse = search(sp.csr_matrix(queries), sp.csr_matrix(corpus), 5)
    np.testing.assert_allclose(sparse[1], dense[1], atol=1e-12)
    np.testing.assert_array_equal(sparse[0], dense[0])  # the same exact scores, the same tie order
    with pytest.raises(ValueError, match="must share D"):
        search(sp.csr_matrix(queries), sp.csr_matrix(corpus[:, :5]), 5)
    with pytest.raises(ValueError, match="cosine only"):
        search(sp.csr_matrix(queries), sp.csr_matrix(corpus), 5, metric="euclidean")


def test_nearest_neighbours_by_hand() -> None:
    # x: 0 1 2 5 6 8 (see test_structure.LINE): equal distances in index order
    indices, sims = nearest_neighbours(_line(0, 1, 2, 5, 6, 8), 3, metric="euclidean")
    assert indices.tolist() == [[1, 2, 3], [0, 2, 3], [1, 0, 3], [4, 2, 5], [3, 5, 2], [4, 3, 2]]
    np.testing.assert_allclose(sims[0], [-1, -2, -5])


def test_cosine_and_euclidean_differ() -> None:
    x = np.array([[1.0, 0.0], [10.0, 0.0], [1.0, 1.0]])
    # Node 0: (10, 0) points the same way (cosine 1) but is 9 away; (1, 1) is 1 away at 45 degrees.
    assert nearest_neighbours(x, 1, metric="cosine")[0][0].tolist() == [1]
    assert nearest_neighbours(x, 1, metric="euclidean")[0][0].tolist() == [2]
    # Cosine ignores length: scaling a node changes nothing; it changes Euclidean neighbours.
    scaled = x * np.array([[1.0], [0.05], [1.0]])
    assert nearest_neighbours(scaled, 1, metric="cosine")[0][0].tolist() == [1]
    assert nearest_neighbours(scaled, 1, metric="euclidean")[0][0].tolist() == [1]
    with pytest.raises(ValueError, match="unknown metric"):
        nearest_neighbours(x, 1, metric="dot")
    with pytest.raises(ValueError, match="not finite"):
        nearest_neighbours(np.array([[1.0, np.nan], [1.0, 0.0]]), 1)


def test_top_k_orders_ties_by_index_across_the_cut() -> None:
    sims = np.array([[0.5, 1.0, 0.5, 0.5, 0.0], [-np.inf, 0.2, 0.2, 0.2, 0.2]])
    indices, values = top_k(sims, 2)
    assert indices.tolist() == [[1, 0], [1, 2]]
    np.testing.assert_array_equal(values, [[1.0, 0.5], [0.2, 0.2]])
    assert top_k(sims, 5)[0].tolist() == [[1, 0, 2, 3, 4], [1, 2, 3, 4, 0]]


def test_blocked_equals_unblocked() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(57, 6))
    for metric in ("cosine", "euclidean"):
        small = nearest_neighbours(x, 5, metric=metric, block_size=4)
        whole = nearest_neighbours(x, 5, metric=metric, block_size=1000)
        np.testing.assert_array_equal(small[0], whole[0])
        np.testing.assert_allclose(small[1], whole[1], rtol=0, atol=1e-12)
