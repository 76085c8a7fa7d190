"""Graph–label alignment (issue 21, item 3): the figures by hand on small graphs, the random-graph
baseline keeping degrees, and the report over a prepared dataset."""

from __future__ import annotations

import numpy as np
import pytest

from seqstruct.data.alignment import (
    alignment_table,
    column_alignment,
    configuration_model,
    dataset_alignment,
    homophily,
    knn_accuracy,
    label_matrix,
)
from seqstruct.data.graph import Graph
from seqstruct.data.prepared import prepare


def _graph(n: int, pairs: list[tuple[int, int]], weights: list[float] | None = None) -> Graph:
    edges = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    w = np.ones(len(edges), np.float32) if weights is None else np.asarray(weights, np.float32)
    return Graph(tuple(f"n{i}" for i in range(n)), edges, w)


def test_label_matrix_reads_single_multi_and_missing_labels() -> None:
    y, labels = label_matrix(["b", ["a", "b"], None, "", ("c",)])
    assert labels == ["a", "b", "c"]
    assert y.toarray().tolist() == [[0, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 1]]


def test_homophily_and_knn_by_hand() -> None:
    # 0-1-2 a path of "x", "x", "y"; 3 "y" hangs off 2 by a heavy edge; 4 is unlabelled, linked to 0.
    labels = ["x", "x", "y", "y", None]
    pairs = [(0, 1), (1, 2), (2, 3), (0, 4)]
    y, _ = label_matrix(labels)
    edges = np.asarray(pairs)
    assert homophily(edges, y) == (pytest.approx(2 / 3), 3)  # (0,1) and (2,3) share; (0,4) not counted
    # Votes: 0 <- {x}; 1 <- {x, y} tie -> "x" (first sorted); 2 <- x (1) vs y (5) -> y; 3 <- y.
    accuracy, majority, scored = knn_accuracy(edges, np.array([1, 1, 5, 1], np.float32), y)
    assert (accuracy, scored) == (1.0, 4)
    assert majority == 0.5  # "x" and "y" tie in frequency: the first, "x", is right for nodes 0 and 1
    # With unit weights node 2's vote ties (x from 1, y from 3) and goes to "x": wrong.
    assert knn_accuracy(edges, np.ones(4, np.float32), y)[0] == 0.75
    # Multi-label: Jaccard of the label sets. {x,z}-{z} is 1/2, {z}-{y} is 0.
    y2, _ = label_matrix([["x", "z"], ["z"], ["y"]])
    assert homophily(np.array([[0, 1], [1, 2]]), y2)[0] == 0.25


def test_multilabel_knn_predicts_the_labels_of_at_least_half_the_neighbour_weight() -> None:
    # Node 0 {a, b} has neighbours 1 {a}, 2 {a, c} and 3 {b}: a has 2/3 of the weight (predicted), b and c
    # 1/3 each (not): prediction {a} against {a, b} scores 1/2. Nodes 1-3 hear only node 0: {a, b}.
    y, _ = label_matrix([["a", "b"], ["a"], ["a", "c"], ["b"]])
    edges = np.array([[0, 1], [0, 2], [0, 3]])
    score, majority, scored = knn_accuracy(edges, np.ones(3, np.float32), y, multilabel=True)
    assert scored == 4
    assert score == pytest.approx((1 / 2 + 1 / 2 + 1 / 3 + 1 / 2) / 4)
    # "a" is carried by 3 of 4 nodes, "b" by 2 of 4: {a, b} for everyone.
    assert majority == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 2) / 4)


def test_configuration_model_keeps_every_degree() -> None:
    rng = np.random.default_rng(0)
    edges = rng.integers(0, 50, size=(200, 2))
    shuffled = configuration_model(edges, seed=3)
    assert shuffled.shape == edges.shape
    assert np.array_equal(
        np.bincount(shuffled.ravel(), minlength=50), np.bincount(edges.ravel(), minlength=50)
    )
    assert not np.array_equal(shuffled, edges)
    assert np.array_equal(configuration_model(edges, seed=3), shuffled)  # seeded


def test_an_aligned_graph_is_told_from_a_label_blind_one() -> None:
    """Two cliques of 10 labelled by clique: aligned. The same graph against labels drawn at random: not."""
    pairs = [(a, b) for group in (range(10), range(10, 20)) for a in group for b in group if a < b]
    graph = _graph(20, pairs)
    by_clique = column_alignment(graph, ["p"] * 10 + ["q"] * 10, "clique", draws=20)
    assert by_clique.homophily == 1.0 and by_clique.knn_accuracy == 1.0 and by_clique.aligned
    assert by_clique.homophily_random < 0.7 and by_clique.knn_majority == 0.5
    shuffled = list(np.random.default_rng(1).permutation(["p"] * 10 + ["q"] * 10))
    blind = column_alignment(graph, shuffled, "random", draws=20)
    assert not blind.aligned
    assert abs(blind.homophily - blind.homophily_random) < 4 * blind.homophily_random_std + 0.05
    # Labels nearly every node has alone: a tiny edge above random graphs that are all but exact is no
    # alignment (the 0.05 margin), however many stds it is.
    almost_unique = [f"u{i}" for i in range(19)] + ["u0"]
    assert not column_alignment(graph, almost_unique, "lemma", draws=20).aligned
    table = alignment_table([by_clique, blind])
    assert "| clique | 20 | 1.000 |" in table and table.count("| yes |") == 1


def test_the_report_over_a_prepared_dataset_and_its_errors(tmp_path) -> None:
    out = tmp_path / "cliques"
    prepare("cliques", out, topics=4, clique_size=6, min_length=10, max_length=12, seed=0)
    (row,) = dataset_alignment(out, draws=5)
    assert row.column == "topic" and row.aligned  # the recipe's cliques are its topics
    assert row.labelled_nodes == 24 and row.knn_accuracy > 0.9 > 0.5 > row.knn_random  # some noise edges
    with pytest.raises(ValueError, match=r"no label column \['nope'\]; its label columns are \['topic'\]"):
        dataset_alignment(out, columns=["nope"])
    with pytest.raises(FileNotFoundError, match="no graph"):
        dataset_alignment(out, graph_path=tmp_path / "missing.tsv")
