from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from seqstruct.evaluation.search import search
from seqstruct.evaluation.structure import knn_loo, knn_vote, link_retrieval, vote_auroc


def _line(*xs: float) -> np.ndarray:
    """Points on the x axis of the plane: [N, 2]."""
    return np.array([[x, 0.0] for x in xs])


# Six points on a line, worked by hand with Euclidean distance (k=3):
#   node:   0  1  2  3  4  5
#   x:      0  1  2  5  6  8
#   label:  A  A  B  C  B  B
# neighbours (nearest first, equal distances in index order) and the vote:
#   0: 1 2 3 (A B C)  three-way tie; summed similarity A -1, B -2, C -5        -> A  right
#   1: 0 2 3 (A B C)  tie; sums A -1, B -1, C -4; A, B still tied, nearest is 0 -> A  right
#   2: 1 0 3 (A A C)                                                            -> A  wrong
#   3: 4 2 5 (B B B)  (2 and 5 both at distance 3)                              -> B  wrong
#   4: 3 5 2 (C B B)                                                            -> B  right
#   5: 4 3 2 (B C B)                                                            -> B  right
LINE = _line(0, 1, 2, 5, 6, 8)
LINE_LABELS = np.array(["A", "A", "B", "C", "B", "B"])


def test_knn_loo_by_hand() -> None:
    result = knn_loo(LINE, LINE_LABELS, k=3, metric="euclidean")
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["chance"] == pytest.approx(3 / 6)
    assert (result["n"], result["classes"], result["singletons"], result["auroc_classes"]) == (6, 3, 1, 2)
    # Vote fractions (A, B): 0 (1/3, 1/3), 1 (1/3, 1/3), 2 (2/3, 0), 3 (0, 1), 4 (0, 2/3), 5 (0, 2/3).
    # A vs rest: positives 0, 1 at 1/3 beat 3 of the 4 negatives (0, 0, 0; not 2/3) -> 6/8.
    # B vs rest: positives 2, 4, 5 at 0, 2/3, 2/3 against 1/3, 1/3, 1 -> (0 + 2 + 2)/9.
    # C has one member and is left out of the macro average.
    assert result["auroc"] == pytest.approx((6 / 8 + 4 / 9) / 2)


def test_perfect_embeddings_score_one() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 10
    labels = np.repeat(np.arange(4), 5)
    x = centres[labels] + rng.normal(size=(20, 8)) * 0.01  # [20, 8] tight clusters
    result = knn_loo(x, labels.astype(str), k=3)
    assert (result["accuracy"], result["auroc"], result["chance"]) == (1.0, 1.0, 0.25)
    # Each node's cluster mates are its links: the first hit is always first, and the top 4 are all hits.
    members = [np.flatnonzero(labels == labels[i]) for i in range(20)]
    links = link_retrieval(x, np.arange(20), members, ks=(1, 4))
    assert (links["mrr"], links["ndcg@10"], links["precision@4"], links["recall@4"]) == (1.0, 1.0, 1.0, 1.0)
    assert links["queries"] == 20


def test_two_classes_and_one_class() -> None:
    x = _line(0, 1, 2, 10, 11, 12)
    two = knn_loo(x, np.array(["a", "a", "a", "b", "b", "b"]), k=3, metric="euclidean")
    # Nodes 2 and 3 see 2 of their own class and 1 of the other: all right; AUROC 1 for both classes.
    assert (two["accuracy"], two["auroc"], two["auroc_classes"]) == (1.0, 1.0, 2)
    one = knn_loo(x, np.array(["a"] * 6), k=3)
    assert (one["accuracy"], one["auroc"], one["chance"]) == (1.0, None, 1.0)


def test_vote_and_auroc_match_plain_references() -> None:
    rng = np.random.default_rng(2)
    n, k, c = 300, 5, 7
    y = rng.integers(0, c, size=n)
    neighbour_classes = rng.integers(0, c, size=(n, k))
    # Few distinct similarities, so that ties in the summed similarity really happen.
    similarities = -np.sort(rng.integers(0, 3, size=(n, k)), axis=1).astype(float)
    predicted = knn_vote(neighbour_classes, similarities)
    for row, classes in enumerate(neighbour_classes):
        votes = {cls: (classes == cls).sum() for cls in classes}
        sums = {cls: similarities[row][classes == cls].sum() for cls in classes}
        best = max(votes[cls] for cls in classes)
        tied = [cls for cls in classes if votes[cls] == best]
        top = max(sums[cls] for cls in tied)
        expected = next(cls for cls in classes if cls in tied and sums[cls] == top)
        assert predicted[row] == expected
    fractions = np.stack([(neighbour_classes == cls).mean(axis=1) for cls in range(c)], axis=1)  # [N, C]
    expected = [roc_auc_score(y == cls, fractions[:, cls]) for cls in range(c)]
    np.testing.assert_allclose(vote_auroc(neighbour_classes, y, np.arange(c)), expected, atol=1e-12)


def test_link_retrieval_by_hand() -> None:
    #   node: 0  1  2  3   4   5
    #   x:    0  1  3  6  10  15
    x = _line(0, 1, 3, 6, 10, 15)
    queries = np.array([0, 3, 5, 4])
    relevant = [np.array([2, 4]), np.array([5, 2]), np.array([5]), np.array([3, 5])]
    exclude = [np.array([], dtype=np.int64), np.array([2]), np.array([], dtype=np.int64), np.array([])]
    result = link_retrieval(x, queries, relevant, ks=(1, 3), exclude=exclude, metric="euclidean")
    # Query 0 ranks 1 2 3 4 5: hits at ranks 2 and 4.
    # Query 3 without 2 (excluded, so not relevant either) ranks 4 1 0 5: its one hit, 5, at rank 4.
    # Query 5's only relevant node is itself: skipped.
    # Query 4 ranks 3 5 2 1 0: hits at ranks 1 and 2.
    assert (result["queries"], result["skipped"]) == (3, 1)
    assert result["mrr"] == pytest.approx((1 / 2 + 1 / 4 + 1) / 3)
    d = [1 / math.log2(r + 1) for r in range(1, 6)]  # discount of ranks 1..5
    ndcg = [(d[1] + d[3]) / (d[0] + d[1]), d[3] / d[0], 1.0]
    assert result["ndcg@10"] == pytest.approx(sum(ndcg) / 3)
    assert result["precision@1"] == pytest.approx((0 + 0 + 1) / 3)
    assert result["recall@1"] == pytest.approx((0 + 0 + 1 / 2) / 3)
    assert result["precision@3"] == pytest.approx((1 / 3 + 0 + 2 / 3) / 3)
    assert result["recall@3"] == pytest.approx((1 / 2 + 0 + 1) / 3)


def test_query_is_never_its_own_hit() -> None:
    # Node 0 and its duplicate, node 1, are equally near node 0; only node 1 may be found.
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    result = link_retrieval(x, np.array([0]), [np.array([0, 3])], ks=(1, 2))
    # Ranking of 0: 1 (cosine 1), 3, 2; the relevant ones are {3} once 0 itself is dropped.
    assert result["mrr"] == pytest.approx(1 / 2)
    assert (result["precision@1"], result["recall@2"]) == (0.0, 1.0)
    none = link_retrieval(x, np.array([0]), [np.array([0])])
    assert (none["queries"], none["skipped"], none["mrr"]) == (0, 1, None)


def test_blocked_equals_unblocked() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(57, 6))
    labels = rng.integers(0, 4, size=57).astype(str)
    for metric in ("cosine", "euclidean"):
        assert knn_loo(x, labels, metric=metric, block_size=3) == knn_loo(x, labels, metric=metric)
        queries = np.arange(0, 57, 2)
        relevant = [rng.choice(57, size=3, replace=False) for _ in queries]
        exclude = [rng.choice(57, size=2, replace=False) for _ in queries]
        args = (x, queries, relevant, (1, 5, 10), exclude, metric)
        assert link_retrieval(*args, block_size=5) == link_retrieval(*args, block_size=1000)


# A tiny 2-D set: classes 0 (near the x axis), 1 (near the y axis), 2 (the negative x axis).
TRAIN = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
LABELS = np.array([0, 0, 1, 1, 2])
QUERIES = np.array([[1.0, 0.2], [0.2, 1.0], [-1.0, 0.1], [0.75, 0.7]])


def test_knn_on_a_tiny_2d_set_by_hand() -> None:
    def predict(k: int) -> list[int]:
        found, cosines = search(QUERIES, TRAIN, k)
        return knn_vote(LABELS[found], cosines).tolist()

    # cosines of query 3 (-1, 0.1): class-2 point 0.995, (0, 1) 0.0995, (0.1, 0.9) -0.011, ...
    assert predict(1) == [0, 1, 2, 0]  # each nearest point's class
    # k = 3: q1 -> (0.9, 0.1) 0.996, (1, 0) 0.981, (0.1, 0.9) 0.303: class 0 by 2 votes to 1; q2 the mirror
    # image; q3 -> one class-2 and two class-1 points: class 1 outvotes the nearest point
    assert predict(3) == [0, 1, 1, 0]
    # k = 2, q4 (0.75, 0.7): (0.9, 0.1) 0.802 and (0.1, 0.9) 0.759, one vote each: the closer class 0
    assert predict(2)[3] == 0


def test_knn_vote_ties_go_to_the_closer_class_then_the_nearest_neighbour() -> None:
    classes = np.array([[2, 1, 1, 2], [2, 1, 1, 2], [2, 1, 1, 2]])  # two votes each for classes 1 and 2
    similarities = np.array([[0.9, 0.8, 0.7, 0.1], [0.5, 0.5, 0.5, 0.5], [0.3, 0.2, 0.1, 0.9]])
    # row 1: class 2 sums 1.0, class 1 1.5 -> 1; row 2: equal sums -> 2, the nearest neighbour's class
    # (not the lower class index); row 3: class 2 sums 1.2, class 1 0.3 -> 2
    assert knn_vote(classes, similarities).tolist() == [1, 2, 2]
    assert knn_vote(classes[:1, :1], similarities[:1, :1]).tolist() == [2]
    with pytest.raises(ValueError, match="one shape"):
        knn_vote(classes, similarities[:, :2])
