"""CAFA metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from seqstruct.evaluation.metrics import (
    accuracy,
    first_relevant_rank,
    fmax,
    macro_f1,
    micro_aupr,
    mrr,
    ndcg_at_k,
    recall_at_k,
)

Y = np.array([[1, 0, 1], [0, 1, 0]], dtype=bool)
S = np.array([[0.9, 0.8, 0.2], [0.1, 0.7, 0.6]])


def test_fmax_by_hand() -> None:
    # t in (0.6, 0.7]: protein 1 predicts {0, 1} (P 1/2, R 1/2), protein 2 predicts {1} (P 1, R 1):
    # precision 0.75, recall 0.75, F 0.75; every other threshold does worse (t = 0.2: F 0.737).
    value, threshold = fmax(Y, S)
    assert value == pytest.approx(0.75)
    assert threshold == pytest.approx(0.61)


def test_fmax_perfect_and_unannotated_rows_ignored() -> None:
    y = np.vstack([Y, np.zeros((1, 3), dtype=bool)])
    value, _ = fmax(y, np.vstack([Y.astype(float), [[0.9, 0.9, 0.9]]]))
    assert value == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no protein has an annotation"):
        fmax(np.zeros((2, 3), dtype=bool), S)
    with pytest.raises(ValueError, match="one shape"):
        fmax(Y, S[:, :2])


def test_micro_aupr_by_hand() -> None:
    # pooled pairs by score: 0.9 (+), 0.8 (-), 0.7 (+), 0.6 (-), 0.2 (+), 0.1 (-)
    # precision at each positive: 1/1, 2/3, 3/5; average precision = (1 + 2/3 + 3/5) / 3
    assert micro_aupr(Y, S) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    with pytest.raises(ValueError, match="no positive"):
        micro_aupr(np.zeros((2, 3), dtype=bool), S)


# Ranking and single-label metrics. Relevance rows: hits at ranks 2; 1 and 3; none.
REL = np.array([[0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]], dtype=bool)


def test_first_relevant_rank_and_mrr_by_hand() -> None:
    np.testing.assert_array_equal(first_relevant_rank(REL), [2, 1, np.inf])
    assert mrr(REL) == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert mrr([2, 1, np.inf]) == pytest.approx((1 / 2 + 1 + 0) / 3)  # ranks work as well
    assert mrr([2, 1, 12], cutoff=1) == pytest.approx(1 / 3)  # MRR@1: only rank 1 counts
    with pytest.raises(ValueError, match="1-based"):
        mrr([0, 1])


def test_recall_and_ndcg_at_k_by_hand() -> None:
    n_relevant = np.array([1, 3, 2])  # query 2 has a third relevant item beyond the ranking
    assert recall_at_k(REL, 1, n_relevant) == pytest.approx((0 + 1 / 3 + 0) / 3)
    assert recall_at_k(REL, 3, n_relevant) == pytest.approx((1 + 2 / 3 + 0) / 3)
    # DCG@3: q1 1/log2(3); q2 1 + 1/log2(4) = 1.5; ideal: q1 1, q2 1 + 1/log2(3) + 1/2, q3 1 + 1/log2(3)
    expected = (1 / np.log2(3) + 1.5 / (1.5 + 1 / np.log2(3)) + 0) / 3
    assert ndcg_at_k(REL, 3, n_relevant) == pytest.approx(expected)
    with pytest.raises(ValueError, match="at least one relevant"):
        recall_at_k(REL, 3)  # by default query 3 has none: undefined


def test_ndcg_at_10_by_hand() -> None:
    relevance = np.zeros((3, 12), dtype=bool)
    relevance[0, [1, 4, 10]] = True  # ranks 2, 5 and 11 (beyond the cutoff)
    relevance[1, :10] = True  # 12 relevant items: the ideal ranking fills the top 10 too
    relevance[2, 9] = True  # rank 10, the only relevant item
    n_relevant = np.array([3, 12, 1])
    # q1: (1/log2 3 + 1/log2 6) / (1 + 1/log2 3 + 1/log2 4) = 1.01778 / 2.13093 = 0.47762
    # q2: 1; q3: 1/log2 11 = 0.28906; mean 0.58890
    assert ndcg_at_k(relevance, 10, n_relevant) == pytest.approx(0.5888962, abs=1e-7)
    assert ndcg_at_k(relevance[:1], 10, n_relevant[:1]) == pytest.approx(0.4776237, abs=1e-7)
    assert ndcg_at_k(relevance[2:], 10, n_relevant[2:]) == pytest.approx(0.2890648, abs=1e-7)


def test_accuracy_and_macro_f1_by_hand() -> None:
    y_true = np.array(["a", "a", "b", "c"])
    y_pred = np.array(["a", "b", "b", "b"])
    assert accuracy(y_true, y_pred) == pytest.approx(0.5)
    # F1: a = 2*(1*0.5)/1.5 = 2/3; b: precision 1/3, recall 1 -> 0.5; c: 0
    assert macro_f1(y_true, y_pred) == pytest.approx((2 / 3 + 0.5 + 0) / 3)
    with pytest.raises(ValueError, match="one non-empty shape"):
        accuracy(y_true, y_pred[:2])
