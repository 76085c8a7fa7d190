"""Graphs over the pretraining sequences: an edge list whose ids are those of the FASTA or text records.

File format: tab-separated `id_a  id_b [weight]`, one edge per line; blank lines and lines starting with
`#` are skipped; plain or gzipped. Undirected unless asked otherwise, so `a b` and `b a` are one edge.

Weights (1 when the column is absent) are relative per node: `sample_contrast` draws an anchor's positive
among its neighbours in proportion to the weights of its edges, so only their ratios at one node matter
(weights 1 and 1000 on every edge give the same draws, bitwise; 9 against 1 gives that neighbour 90% of
the draws). They change nothing else: negatives are non-neighbours, which have no weight.

What is wrong with the file is an error naming the file and line (a line without 2 or 3 columns, a weight
that is not a positive finite number) or, for ids that match no record, the first few unknown ids and
their count. What is merely untidy is dropped and reported, not fatal: self-loops, repeated edges (the
first weight is kept), and nodes without any edge (they stay in the graph with degree 0).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqstruct.io import FileLineError, tsv_rows

logger = logging.getLogger(__name__)

_SHOWN = 5  # ids or lines quoted in an error or report before "... and N more"


class GraphError(FileLineError):
    """A malformed edge list. `line` is 1-based, None for errors about the file as a whole."""


@dataclass(frozen=True)
class Graph:
    """Nodes in record order; edges as index pairs (a < b when undirected), one weight each."""

    nodes: tuple[str, ...]
    edges: np.ndarray  # [E, 2] int64 node indices
    weights: np.ndarray  # [E] float32
    directed: bool = False

    def degrees(self) -> np.ndarray:
        """[N] edges per node (out-edges when directed)."""
        ends = self.edges[:, 0] if self.directed else self.edges.ravel()
        return np.bincount(ends, minlength=len(self.nodes))

    def neighbours(self) -> list[np.ndarray]:
        """Per node, the sorted indices of its neighbours (successors when directed)."""
        return self.adjacency_lists()[0]

    def adjacency_lists(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per node, the sorted indices of its neighbours (successors when directed) and the weights of
        the edges to them, aligned: ([N] arrays [deg_i] int64, [N] arrays [deg_i] float32)."""
        pairs = self.edges if self.directed else np.concatenate([self.edges, self.edges[:, ::-1]])
        weights = self.weights if self.directed else np.concatenate([self.weights, self.weights])
        order = np.lexsort((pairs[:, 1], pairs[:, 0]))
        pairs, weights = pairs[order], weights[order]
        bounds = np.searchsorted(pairs[:, 0], np.arange(len(self.nodes) + 1))
        spans = [slice(bounds[i], bounds[i + 1]) for i in range(len(self.nodes))]
        return [pairs[span, 1] for span in spans], [weights[span] for span in spans]

    def subgraph(self, keep: np.ndarray) -> Graph:
        """The graph induced on the nodes `keep` ([K] indices, in the order they are given): edges with an
        end outside `keep` are dropped, the rest renumbered."""
        keep = np.asarray(keep, dtype=np.int64)
        position = np.full(len(self.nodes), -1, dtype=np.int64)
        position[keep] = np.arange(len(keep))
        ends = position[self.edges]  # [E, 2]
        inside = (ends >= 0).all(axis=1)
        edges = ends[inside]
        if not self.directed:
            edges = np.sort(edges, axis=1)  # keep a < b after renumbering
        return Graph(
            nodes=tuple(self.nodes[i] for i in keep),
            edges=edges.reshape(-1, 2),
            weights=self.weights[inside],
            directed=self.directed,
        )


@dataclass
class GraphReport:
    """What reading the edge list found besides the edges themselves."""

    edges: int = 0
    self_loops: list[int] = field(default_factory=list)  # line numbers
    duplicates: list[int] = field(default_factory=list)  # line numbers of repeats
    isolated: int = 0
    degree_min: int = 0
    degree_median: float = 0.0
    degree_mean: float = 0.0
    degree_max: int = 0

    def summary(self) -> str:
        return (
            f"{self.edges} edges; degree min {self.degree_min}, median {self.degree_median:g}, "
            f"mean {self.degree_mean:.2f}, max {self.degree_max}; {self.isolated} isolated nodes; "
            f"dropped {len(self.self_loops)} self-loops{_lines(self.self_loops)} and "
            f"{len(self.duplicates)} repeated edges{_lines(self.duplicates)}"
        )


def _lines(numbers: list[int]) -> str:
    if not numbers:
        return ""
    shown = ", ".join(str(n) for n in numbers[:_SHOWN])
    more = f" and {len(numbers) - _SHOWN} more" if len(numbers) > _SHOWN else ""
    return f" (lines {shown}{more})"


def _weight(raw: str, path: Path, line: int) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise GraphError(path, line, f"weight {raw!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise GraphError(path, line, f"weight {raw!r} must be a positive finite number")
    return value


def read_edge_list(
    path: str | Path, node_ids: Sequence[str], *, directed: bool = False
) -> tuple[Graph, GraphReport]:
    """Read `path` into a Graph over `node_ids` (the records' ids, in record order), with a report of
    self-loops, repeated edges, isolated nodes and degrees (also logged)."""
    path = Path(path)
    index = {node: i for i, node in enumerate(node_ids)}
    if len(index) != len(node_ids):
        raise ValueError("node ids must be unique")
    report = GraphReport()
    seen: set[tuple[int, int]] = set()
    edges: list[tuple[int, int]] = []
    weights: list[float] = []
    unknown: dict[str, int] = {}  # id -> first line it appears on
    for line_number, columns in tsv_rows(path, "an edge list (TSV lines id_a<TAB>id_b[<TAB>weight])"):
        if len(columns) not in (2, 3):
            raise GraphError(path, line_number, f"expected 2 or 3 tab-separated columns, got {len(columns)}")
        a, b = columns[0].strip(), columns[1].strip()
        weight = _weight(columns[2].strip(), path, line_number) if len(columns) == 3 else 1.0
        missing = [node for node in (a, b) if node not in index]
        for node in missing:
            unknown.setdefault(node, line_number)
        if missing:
            continue
        i, j = index[a], index[b]
        if i == j:
            report.self_loops.append(line_number)
            continue
        key = (i, j) if directed or i < j else (j, i)
        if key in seen:
            report.duplicates.append(line_number)
            continue
        seen.add(key)
        edges.append(key)
        weights.append(weight)
    if unknown:
        first = sorted(unknown.items(), key=lambda item: item[1])[:_SHOWN]
        shown = ", ".join(f"{node!r} (line {line})" for node, line in first)
        raise GraphError(
            path,
            None,
            f"{len(unknown)} ids match no record: {shown}" + (" ..." if len(unknown) > _SHOWN else ""),
        )
    if not edges:
        raise GraphError(path, None, "no edges between known records")
    graph = Graph(
        nodes=tuple(node_ids),
        edges=np.asarray(edges, dtype=np.int64).reshape(-1, 2),
        weights=np.asarray(weights, dtype=np.float32),
        directed=directed,
    )
    degrees = graph.degrees()
    report.edges = len(edges)
    touched = np.bincount(graph.edges.ravel(), minlength=len(node_ids))  # edges at either end
    report.isolated = int((touched == 0).sum())
    report.degree_min, report.degree_max = int(degrees.min()), int(degrees.max())
    report.degree_median, report.degree_mean = float(np.median(degrees)), float(degrees.mean())
    logger.info("%s: %s", path, report.summary())
    return graph, report


def sample_contrast(
    graph: Graph,
    anchors: np.ndarray,
    *,
    num_negatives: int,
    seed: int,
    groups: np.ndarray | None = None,
    lists: tuple[list[np.ndarray], list[np.ndarray]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For each anchor (node index): one positive drawn from its neighbours in proportion to the edge
    weights (uniformly when they are all equal), and `num_negatives` distinct negatives drawn uniformly
    from the nodes that are neither the anchor nor its neighbours, restricted to the anchor's group when
    `groups` ([N] labels, e.g. species) is given.

    Each anchor draws from its own generator, seeded by (seed, anchor): its extras do not depend on the
    other anchors of the call, so a batch split across processes draws what the whole batch would (an
    anchor given twice draws the same twice). Returns positives [A] (-1 for an anchor without neighbours,
    which callers skip) and negatives [A, num_negatives]; a group too small to supply the negatives is an
    error naming the anchor. `lists` (from `graph.adjacency_lists()`) saves recomputing them per batch.
    """
    neighbours, weights = graph.adjacency_lists() if lists is None else lists
    n = len(graph.nodes)
    members: dict[object, np.ndarray] = {}
    if groups is not None:
        if len(groups) != n:
            raise ValueError(f"groups has {len(groups)} labels for {n} nodes")
        for label in np.unique(groups):
            members[label] = np.flatnonzero(groups == label)
    positives = np.full(len(anchors), -1, dtype=np.int64)
    negatives = np.empty((len(anchors), num_negatives), dtype=np.int64)
    for row, anchor in enumerate(np.asarray(anchors, dtype=np.int64).tolist()):
        rng = np.random.default_rng([seed, anchor])
        near = neighbours[anchor]
        if len(near):
            positives[row] = near[_draw_neighbour(rng, weights[anchor])]
        if num_negatives == 0:
            continue
        pool = members[groups[anchor]] if groups is not None else None
        excluded = near if groups is None else near[groups[near] == groups[anchor]]
        available = (n if pool is None else len(pool)) - len(excluded) - 1
        if available < num_negatives:
            raise ValueError(
                f"node {graph.nodes[anchor]!r}: {available} non-neighbours"
                + (" in its group" if groups is not None else "")
                + f", fewer than the {num_negatives} negatives asked for"
            )
        negatives[row] = _draw_excluding(rng, pool, n, np.append(excluded, anchor), num_negatives, available)
    return positives, negatives


def _draw_neighbour(rng: np.random.Generator, weights: np.ndarray) -> int:
    """An index into one node's neighbours ([D] edge weights), drawn in proportion to the weights.

    Equal weights of any size take the uniform draw (one `integers` call), so a graph whose weights are
    all 1, or all 1000, samples exactly as an unweighted one; otherwise one uniform in [0, total) picks
    the neighbour whose share of the cumulative weights it falls in.
    """
    if (weights == weights[0]).all():
        return int(rng.integers(len(weights)))
    cumulative = np.cumsum(weights, dtype=np.float64)  # [D]
    return int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))


def _draw_excluding(
    rng: np.random.Generator,
    pool: np.ndarray | None,
    n: int,
    excluded: np.ndarray,
    count: int,
    available: int,
) -> np.ndarray:
    """`count` distinct uniform draws from `pool` (all n nodes when None) minus `excluded` ([X] sorted-able).

    Rejection sampling while the allowed nodes are at least half the pool keeps a batch's cost
    independent of the graph's size (a 500k-node graph must not be scanned per anchor); a crowded pool
    is enumerated instead.
    """
    size = n if pool is None else len(pool)
    if 2 * available >= size:
        chosen: list[int] = []
        banned = set(excluded.tolist())
        while len(chosen) < count:
            draw = rng.integers(size, size=2 * (count - len(chosen)))
            for value in (draw if pool is None else pool[draw]).tolist():
                if value not in banned:
                    banned.add(value)
                    chosen.append(value)
                    if len(chosen) == count:
                        break
        return np.asarray(chosen, dtype=np.int64)
    candidates = np.arange(n) if pool is None else pool
    allowed = candidates[~np.isin(candidates, excluded)]
    return rng.choice(allowed, size=count, replace=False)


def split_heldout_nodes(graph: Graph, fraction: float, seed: int) -> tuple[Graph, Graph, np.ndarray]:
    """Hold out a seeded random `fraction` of the nodes (at least one, never all of them).

    Returns the training graph (edges with no held-out end), the held-out graph (edges with at least one
    held-out end) and the sorted held-out node indices [H]. Both graphs keep every node, so indices and ids
    stay those of the records, and together their edges are exactly the graph's edges.
    """
    n = len(graph.nodes)
    if not 0 < fraction < 1:
        raise ValueError(f"held-out fraction must be in (0, 1), got {fraction}")
    count = max(1, round(fraction * n))
    if count >= n:
        raise ValueError(f"holding out {count} of {n} nodes (fraction {fraction}) leaves none to train on")
    heldout = np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))
    touches = np.isin(graph.edges, heldout).any(axis=1)  # [E]

    def part(keep: np.ndarray) -> Graph:
        return Graph(graph.nodes, graph.edges[keep], graph.weights[keep], graph.directed)

    return part(~touches), part(touches), heldout


def write_edge_list(graph: Graph, path: str | Path) -> None:
    """Write `graph` as `read_edge_list` reads it back: `id_a<TAB>id_b`, plus a weight column only when
    some weight is not 1; atomically, gzipped when `path` ends in .gz.

    A graph without edges writes an empty file, which `read_edge_list` rejects ("no edges").
    """
    from seqstruct.io import atomic_open  # graph.py otherwise only reads

    weighted = bool(np.any(graph.weights != 1))
    # Shortest text that reads back as the same float32, so a round trip is exact.
    weights = (
        [np.format_float_positional(w, unique=True, trim="-") for w in graph.weights] if weighted else []
    )
    with atomic_open(path, "w") as handle:
        for row, (a, b) in enumerate(graph.edges.tolist()):
            line = f"{graph.nodes[a]}\t{graph.nodes[b]}"
            handle.write(f"{line}\t{weights[row]}\n" if weighted else f"{line}\n")
