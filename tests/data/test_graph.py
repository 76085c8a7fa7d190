from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from seqstruct.data.graph import (
    Graph,
    GraphError,
    read_edge_list,
    sample_contrast,
    split_heldout_nodes,
    write_edge_list,
)

NODES = ["P1", "P2", "P3", "P4", "P5"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_undirected_edges_with_untidy_lines_reported(tmp_path) -> None:
    path = _write(
        tmp_path / "g.tsv",
        "# comment\nP1\tP2\nP2\tP1\n\nP3\tP3\nP2\tP3\t0.5\nP1\tP2\t2\n",
    )
    graph, report = read_edge_list(path, NODES)
    assert graph.edges.tolist() == [[0, 1], [1, 2]]
    assert graph.weights.tolist() == [1.0, 0.5]  # the first weight of a repeated edge is kept
    assert report.self_loops == [5]
    assert report.duplicates == [3, 7]  # "P2 P1" repeats "P1 P2" when undirected
    assert report.isolated == 2  # P4, P5
    assert graph.degrees().tolist() == [1, 2, 1, 0, 0]
    assert (report.degree_min, report.degree_max, report.degree_median) == (0, 2, 1.0)
    assert [n.tolist() for n in graph.neighbours()] == [[1], [0, 2], [1], [], []]
    assert "2 isolated nodes" in report.summary() and "lines 3, 7" in report.summary()


def test_directed_keeps_both_directions(tmp_path) -> None:
    path = _write(tmp_path / "g.tsv", "P1\tP2\nP2\tP1\nP2\tP3\n")
    graph, report = read_edge_list(path, NODES, directed=True)
    assert graph.edges.tolist() == [[0, 1], [1, 0], [1, 2]]
    assert report.duplicates == []
    assert graph.degrees().tolist() == [1, 2, 0, 0, 0]  # out-degrees
    assert [n.tolist() for n in graph.neighbours()][:3] == [[1], [0, 2], []]
    assert report.isolated == 2


def test_gzip_input(tmp_path) -> None:
    path = tmp_path / "g.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("P4\tP5\n")
    graph, _ = read_edge_list(path, NODES)
    assert graph.edges.tolist() == [[3, 4]]


def test_unknown_ids_named_with_count(tmp_path) -> None:
    lines = "".join(f"P1\tX{i}\n" for i in range(7))
    path = _write(tmp_path / "g.tsv", "P1\tP2\n" + lines)
    with pytest.raises(GraphError) as err:
        read_edge_list(path, NODES)
    message = str(err.value)
    assert "7 ids match no record" in message
    assert "'X0' (line 2)" in message and "'X4' (line 6)" in message and "X5" not in message
    assert str(path) in message


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("P1\tP2\nP1 P3\n", 2, "expected 2 or 3 tab-separated columns, got 1"),
        ("P1\tP2\tP3\tP4\n", 1, "got 4"),
        ("P1\tP2\theavy\n", 1, "is not a number"),
        ("P1\tP2\t-1\n", 1, "positive finite"),
        ("P1\tP2\tnan\n", 1, "positive finite"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text: str, line: int, reason: str) -> None:
    path = _write(tmp_path / "g.tsv", text)
    with pytest.raises(GraphError) as err:
        read_edge_list(path, NODES)
    assert err.value.line == line and reason in str(err.value)
    assert f"line {line}" in str(err.value)


def test_no_edges_is_an_error(tmp_path) -> None:
    path = _write(tmp_path / "g.tsv", "# nothing\nP1\tP1\n")
    with pytest.raises(GraphError, match="no edges"):
        read_edge_list(path, NODES)


def test_duplicate_node_ids_refused(tmp_path) -> None:
    path = _write(tmp_path / "g.tsv", "P1\tP2\n")
    with pytest.raises(ValueError, match="unique"):
        read_edge_list(path, ["P1", "P2", "P1"])


def test_weights_are_float32_and_edges_int64(tmp_path) -> None:
    graph, _ = read_edge_list(_write(tmp_path / "g.tsv", "P1\tP2\t3\n"), NODES)
    assert graph.edges.dtype == np.int64 and graph.weights.dtype == np.float32


def _ring(tmp_path: Path, n: int = 8):
    nodes = [f"N{i}" for i in range(n)]
    text = "".join(f"N{i}\tN{(i + 1) % n}\n" for i in range(n))
    graph, _ = read_edge_list(_write(tmp_path / "ring.tsv", text), nodes)
    return graph


def _draws(graph: Graph, anchor: int, seeds: range, num_negatives: int) -> tuple[np.ndarray, np.ndarray]:
    """One anchor's positive [S] and negatives [S, K] under each seed."""
    lists = graph.adjacency_lists()
    draws = [
        sample_contrast(graph, np.array([anchor]), num_negatives=num_negatives, seed=seed, lists=lists)
        for seed in seeds
    ]
    return np.concatenate([p for p, _ in draws]), np.concatenate([n for _, n in draws])


def test_contrast_samples_neighbours_and_non_neighbours(tmp_path) -> None:
    graph = _ring(tmp_path)
    anchors = np.arange(8)
    near = graph.neighbours()
    for seed in range(20):
        positives, negatives = sample_contrast(graph, anchors, num_negatives=3, seed=seed)
        for anchor, positive, row in zip(anchors, positives, negatives, strict=True):
            assert positive in near[anchor]
            assert len(set(row)) == 3 and anchor not in row and not set(row) & set(near[anchor])
    # both neighbours get drawn: the positive is not always the same one
    assert set(_draws(graph, 0, range(20), 3)[0].tolist()) == {1, 7}


def test_contrast_is_deterministic_seeded_and_per_anchor(tmp_path) -> None:
    """An anchor's draws depend on (seed, anchor) alone, so a batch split in two (DDP ranks) draws what
    the whole batch draws."""
    graph = _ring(tmp_path)
    anchors = np.arange(8)
    first = sample_contrast(graph, anchors, num_negatives=2, seed=3)
    again = sample_contrast(graph, anchors, num_negatives=2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    halves = [sample_contrast(graph, part, num_negatives=2, seed=3) for part in (anchors[5:], anchors[:5])]
    assert np.array_equal(np.concatenate([halves[1][0], halves[0][0]]), first[0])
    assert np.array_equal(np.concatenate([halves[1][1], halves[0][1]]), first[1])
    other = sample_contrast(graph, anchors, num_negatives=2, seed=4)
    assert not np.array_equal(first[1], other[1])


def _star(weights: list[float]) -> Graph:
    """Node 0 linked to nodes 1.. with the given weights; two unlinked nodes to draw negatives from."""
    n = len(weights) + 3
    edges = np.array([[0, i + 1] for i in range(len(weights))], dtype=np.int64)
    return Graph(tuple(f"N{i}" for i in range(n)), edges, np.asarray(weights, dtype=np.float32))


def test_adjacency_lists_align_weights_with_neighbours() -> None:
    graph = _weighted_graph([1, 2, 3, 4])  # edges 0-1, 1-2, 0-3, 3-4
    neighbours, weights = graph.adjacency_lists()
    assert [n.tolist() for n in neighbours] == [n.tolist() for n in graph.neighbours()]
    assert neighbours[0].tolist() == [1, 3] and weights[0].tolist() == [1, 3]
    assert neighbours[3].tolist() == [0, 4] and weights[3].tolist() == [3, 4]
    directed = Graph(graph.nodes, graph.edges, graph.weights, directed=True)
    assert directed.adjacency_lists()[1][3].tolist() == [4]  # out-edges only


def test_positives_are_drawn_in_proportion_to_edge_weight() -> None:
    """Weight 9 against 1: the heavy neighbour is drawn 90% of the time. 4000 draws (seeds) put one
    standard deviation at 0.5%, so a 2% tolerance is four of them."""
    positives, _ = _draws(_star([9.0, 1.0]), 0, range(4000), 1)
    assert abs(float((positives == 1).mean()) - 0.9) < 0.02
    assert set(positives.tolist()) == {1, 2}
    three, _ = _draws(_star([1.0, 2.0, 5.0]), 0, range(4000), 0)
    shares = np.bincount(three, minlength=4)[1:] / len(three)
    assert np.allclose(shares, [1 / 8, 2 / 8, 5 / 8], atol=0.025), shares


def test_equal_weights_of_any_size_draw_exactly_as_unweighted() -> None:
    """Weights are relative per anchor: all 1 and all 1000 give the same positives and negatives, bitwise:
    the uniform draw an unweighted graph takes."""
    seeds = range(200)
    ones = _draws(_star([1.0, 1.0, 1.0]), 0, seeds, 2)
    thousands = _draws(_star([1000.0] * 3), 0, seeds, 2)
    assert all(np.array_equal(a, b) for a, b in zip(ones, thousands, strict=True))
    uniform = [1 + np.random.default_rng([seed, 0]).integers(3) for seed in seeds]  # one integers() call
    assert ones[0].tolist() == uniform
    weighted = _draws(_star([1.0, 1.0, 8.0]), 0, seeds, 2)
    assert not np.array_equal(weighted[0], ones[0])


def test_contrast_within_groups_and_isolated_anchor(tmp_path) -> None:
    nodes = ["A", "B", "C", "D", "E", "F"]
    graph, _ = read_edge_list(_write(tmp_path / "g.tsv", "A\tB\nC\tD\n"), nodes)
    groups = np.array([0, 0, 0, 1, 1, 1])
    positives, negatives = sample_contrast(graph, np.array([0, 4]), num_negatives=1, seed=0, groups=groups)
    assert positives.tolist() == [1, -1]  # E has no neighbour
    assert negatives[0, 0] == 2  # A's group {A, B, C} minus A and its neighbour B
    assert negatives[1, 0] in (3, 5)
    with pytest.raises(ValueError, match="'A': 1 non-neighbours in its group"):
        sample_contrast(graph, np.array([0]), num_negatives=2, seed=0, groups=groups)


def _weighted_graph(weights: list[float]) -> Graph:
    edges = np.array([[0, 1], [1, 2], [0, 3], [3, 4]], dtype=np.int64)
    return Graph(tuple(NODES), edges, np.asarray(weights, dtype=np.float32))


def test_write_edge_list_round_trips_without_weights(tmp_path) -> None:
    graph = _weighted_graph([1, 1, 1, 1])
    write_edge_list(graph, tmp_path / "g.tsv")
    assert (tmp_path / "g.tsv").read_text().splitlines()[0] == "P1\tP2"  # no weight column
    again, _ = read_edge_list(tmp_path / "g.tsv", NODES)
    assert np.array_equal(again.edges, graph.edges) and np.array_equal(again.weights, graph.weights)


def test_write_edge_list_round_trips_weights_exactly_and_gzipped(tmp_path) -> None:
    graph = _weighted_graph([1, 0.1, 2.5, 1e-7])
    write_edge_list(graph, tmp_path / "g.tsv.gz")
    with gzip.open(tmp_path / "g.tsv.gz", "rt") as handle:
        assert handle.read().splitlines()[:2] == ["P1\tP2\t1", "P2\tP3\t0.1"]
    again, _ = read_edge_list(tmp_path / "g.tsv.gz", NODES)
    assert np.array_equal(again.edges, graph.edges) and np.array_equal(again.weights, graph.weights)


def test_split_heldout_nodes_partitions_the_edges(tmp_path) -> None:
    graph = _ring(tmp_path, n=20)
    training, heldout, held = split_heldout_nodes(graph, 0.25, seed=1)
    assert held.tolist() == sorted(held.tolist()) and len(held) == 5
    assert training.nodes == heldout.nodes == graph.nodes
    touches = np.isin(graph.edges, held).any(axis=1)
    assert np.array_equal(heldout.edges, graph.edges[touches])
    assert np.array_equal(training.edges, graph.edges[~touches])
    assert not np.isin(training.edges, held).any()
    again = split_heldout_nodes(graph, 0.25, seed=1)[2]
    other = split_heldout_nodes(graph, 0.25, seed=2)[2]
    assert np.array_equal(held, again) and not np.array_equal(held, other)


def test_split_heldout_nodes_holds_out_at_least_one_and_never_all(tmp_path) -> None:
    graph = _ring(tmp_path, n=8)
    assert len(split_heldout_nodes(graph, 0.01, seed=0)[2]) == 1
    with pytest.raises(ValueError, match="leaves none"):
        split_heldout_nodes(graph, 0.99, seed=0)
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        split_heldout_nodes(graph, 0.0, seed=0)
