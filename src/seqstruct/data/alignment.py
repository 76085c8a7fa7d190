"""Graph–label alignment: how well a graph predicts each label column, measured before any training.

Structure-inducing pretraining helps when its graph agrees with the labels a downstream task asks for
(McDermott et al.'s analysis); this report tells a user whether theirs can, for the cost of reading it.
Per label column, over the nodes that carry a label:

- **homophily**: the mean Jaccard similarity of the label sets at the two ends of an edge (for a
  single-label column: the share of edges whose ends share their label);
- **graph kNN accuracy**: each node's labels predicted by a vote of its labelled neighbours (edge weights
  as vote weights), scored by Jaccard similarity with its own: for a single-label column the plurality
  label (ties to the first in sorted order), so the score is accuracy; for a multi-label column every label
  carried by at least half the neighbours' weight. Nodes without a labelled neighbour are not scored;

each against the same figure on degree-preserving random graphs (the configuration model: the edge list's
ends shuffled, so every node keeps its degree; self-loops and repeated edges are kept, as the model has
them), as mean ± std over `draws` seeded draws, and kNN also against always predicting the most frequent
label (multi-label: the labels carried by at least half the nodes). A column is called aligned when both
figures exceed their random mean by more than three random stds and by at least 0.05: on a large graph the
random stds are tiny, and a label nearly every node has alone (a lemma, a synonym) would otherwise pass
on a difference of 0.001. Numeric columns (a length) are no labels
and are left out unless asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from seqstruct.data.graph import Graph, read_edge_list
from seqstruct.data.prepared import load_prepared

# How far above the degree-matched random graphs a figure must lie to count as aligned: in their stds, and
# at least by an absolute margin.
ALIGNED_Z = 3.0
ALIGNED_MARGIN = 0.05


@dataclass(frozen=True)
class ColumnAlignment:
    """The alignment figures of one label column (module docstring)."""

    column: str
    labelled_nodes: int
    labelled_edges: int  # edges with a label at both ends: the homophily's denominator
    homophily: float
    homophily_random: float  # mean over the random graphs
    homophily_random_std: float
    knn_nodes: int  # nodes with a labelled neighbour: the kNN accuracy's denominator
    knn_accuracy: float
    knn_random: float
    knn_random_std: float
    knn_majority: float  # always the most frequent label, on the same nodes

    @property
    def aligned(self) -> bool:
        def above(value: float, mean: float, std: float) -> bool:
            return value > mean + max(ALIGNED_Z * std, ALIGNED_MARGIN)

        return above(self.homophily, self.homophily_random, self.homophily_random_std) and above(
            self.knn_accuracy, self.knn_random, self.knn_random_std
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"aligned": self.aligned}


def is_multilabel(values: Sequence[Any]) -> bool:
    return any(isinstance(v, (list, tuple, set, frozenset, np.ndarray)) for v in values)


def is_label_column(values: Sequence[Any]) -> bool:
    """Labels are strings or lists of them; numbers (a length, a score) are not."""
    return any(isinstance(v, str) and v != "" for v in values) or is_multilabel(values)


def label_matrix(values: Sequence[Any]) -> tuple[sparse.csr_matrix, list[str]]:
    """[N, C] 0/1 indicator of each node's labels, and the C labels in sorted order. A value is a label,
    a list of labels (multi-label columns) or empty/None (no label)."""
    rows: list[list[str]] = []
    for value in values:
        if value is None or value == "":
            rows.append([])
        elif isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
            rows.append(sorted({str(v) for v in value}))
        else:
            rows.append([str(value)])
    labels = sorted({label for row in rows for label in row})
    index = {label: i for i, label in enumerate(labels)}
    indptr = np.cumsum([0] + [len(row) for row in rows])
    indices = np.array([index[label] for row in rows for label in row], dtype=np.int64)
    data = np.ones(len(indices), dtype=np.float64)
    return sparse.csr_matrix((data, indices, indptr), shape=(len(rows), len(labels))), labels


def jaccard_rows(a: sparse.csr_matrix, b: sparse.csr_matrix) -> np.ndarray:
    """[R] Jaccard similarity of the label sets in each row of two [R, C] 0/1 matrices (0 where the
    union is empty)."""
    inter = np.asarray(a.multiply(b).sum(axis=1)).ravel()
    union = np.asarray(a.sum(axis=1)).ravel() + np.asarray(b.sum(axis=1)).ravel() - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def homophily(edges: np.ndarray, y: sparse.csr_matrix) -> tuple[float, int]:
    """(mean Jaccard similarity of the labels at the ends of the labelled edges, their number);
    edges [E, 2]."""
    labelled = np.asarray(y.sum(axis=1)).ravel() > 0  # [N]
    edges = edges[labelled[edges[:, 0]] & labelled[edges[:, 1]]]
    if len(edges) == 0:
        return float("nan"), 0
    return float(jaccard_rows(y[edges[:, 0]], y[edges[:, 1]]).mean()), len(edges)


def knn_accuracy(
    edges: np.ndarray, weights: np.ndarray, y: sparse.csr_matrix, multilabel: bool = False
) -> tuple[float, float, int]:
    """(neighbour-vote score, most-frequent-label score, scored nodes) over labelled nodes with a
    labelled neighbour (module docstring); edges [E, 2] are taken in both directions, weights [E] are the
    votes."""
    n = y.shape[0]
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    loops = rows == cols  # a self-loop of a random graph would let a node vote for itself
    votes_of = np.concatenate([weights, weights])[~loops]
    adjacency = sparse.csr_matrix((votes_of, (rows[~loops], cols[~loops])), shape=(n, n))
    votes = (adjacency @ y).tocsr()  # [N, C] summed neighbour votes per label
    labelled = np.asarray(y.sum(axis=1)).ravel() > 0
    scored = labelled & (np.diff(votes.indptr) > 0)  # [N] has a labelled neighbour
    if not scored.any():
        return float("nan"), float("nan"), 0
    truth = y[scored]  # [S, C]
    count = int(scored.sum())
    if multilabel:
        weight = np.asarray(adjacency[scored] @ (np.asarray(y.sum(axis=1)).ravel() > 0)).ravel()  # [S]
        share = sparse.diags(1.0 / weight) @ votes[scored]  # [S, C] share of neighbour weight per label
        predicted = (share >= 0.5).astype(np.float64)
        frequent = (np.asarray(truth.mean(axis=0)).ravel() >= 0.5).astype(np.float64)  # [C]
        inter = truth @ frequent  # [S] Jaccard of one fixed set with every row, without tiling it
        union = frequent.sum() + np.asarray(truth.sum(axis=1)).ravel() - inter
        constant = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        return float(jaccard_rows(predicted, truth).mean()), float(constant.mean()), count
    winner = np.asarray(votes[scored].argmax(axis=1)).ravel()  # ties: the first (sorted) label
    correct = np.asarray(truth[np.arange(count), winner]).ravel() > 0
    majority = int(np.asarray(truth.sum(axis=0)).ravel().argmax())
    by_majority = np.asarray(truth[:, majority].todense()).ravel() > 0
    return float(correct.mean()), float(by_majority.mean()), count


def configuration_model(edges: np.ndarray, seed: int) -> np.ndarray:
    """A random graph with every node's degree kept: the 2E edge ends shuffled and paired. [E, 2]"""
    ends = edges.ravel().copy()
    np.random.default_rng(seed).shuffle(ends)
    return ends.reshape(-1, 2)


def column_alignment(
    graph: Graph, values: Sequence[Any], column: str, draws: int = 20, seed: int = 0
) -> ColumnAlignment:
    """The alignment of label column `values` ([N], in graph node order) with `graph`."""
    if len(values) != len(graph.nodes):
        raise ValueError(f"column {column!r}: {len(values)} values for {len(graph.nodes)} graph nodes")
    y, _ = label_matrix(values)
    multilabel = is_multilabel(values)
    h, labelled_edges = homophily(graph.edges, y)
    knn, majority, knn_nodes = knn_accuracy(graph.edges, graph.weights, y, multilabel)
    random_h, random_knn = [], []
    for draw in range(draws):
        shuffled = configuration_model(graph.edges, seed + draw)
        random_h.append(homophily(shuffled, y)[0])
        # weights stay with their edge positions: a random graph of the same weight distribution
        random_knn.append(knn_accuracy(shuffled, graph.weights, y, multilabel)[0])
    return ColumnAlignment(
        column=column,
        labelled_nodes=int((np.asarray(y.sum(axis=1)).ravel() > 0).sum()),
        labelled_edges=labelled_edges,
        homophily=h,
        homophily_random=float(np.nanmean(random_h)) if draws else float("nan"),
        homophily_random_std=float(np.nanstd(random_h)) if draws else float("nan"),
        knn_nodes=knn_nodes,
        knn_accuracy=knn,
        knn_random=float(np.nanmean(random_knn)) if draws else float("nan"),
        knn_random_std=float(np.nanstd(random_knn)) if draws else float("nan"),
        knn_majority=majority,
    )


def alignment_table(rows: Sequence[ColumnAlignment]) -> str:
    """Markdown: one row per column, random-graph figures as mean ± std."""
    lines = [
        "| column | labelled nodes | homophily | random graphs | kNN score | random graphs | majority "
        "| aligned |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.column} | {r.labelled_nodes} | {r.homophily:.3f} | {r.homophily_random:.3f} ± "
            f"{r.homophily_random_std:.3f} | {r.knn_accuracy:.3f} | {r.knn_random:.3f} ± "
            f"{r.knn_random_std:.3f} | {r.knn_majority:.3f} | {'yes' if r.aligned else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def dataset_alignment(
    path: str | Path,
    graph_path: str | Path | None = None,
    columns: Sequence[str] | None = None,
    draws: int = 20,
    seed: int = 0,
) -> list[ColumnAlignment]:
    """The alignment of a prepared dataset's label columns (default: every column its card describes)
    with its graph.tsv or the edge list `graph_path` over its ids (any split's)."""
    prepared = load_prepared(path)
    ids: list[str] = []
    for split in prepared.splits.values():
        ids += split["id"]
    known = list(prepared.info.columns)
    train = prepared.split("train")
    wanted = list(columns) if columns else [c for c in known if is_label_column(train[c][:1000])]
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise ValueError(f"{path}: no label column {unknown}; its label columns are {known}")
    if not wanted:
        raise ValueError(f"{path}: the dataset has no label columns to align a graph with")
    source = Path(graph_path) if graph_path else prepared.graph_path
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no graph (give one with --graph: an edge list over the ids)")
    graph, _ = read_edge_list(source, ids)
    out = []
    for column in wanted:
        values: list[Any] = []
        for split in prepared.splits.values():
            values += split[column] if column in split.column_names else [None] * len(split)
        out.append(column_alignment(graph, values, column, draws, seed))
    return out
