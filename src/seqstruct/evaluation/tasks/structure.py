"""Structure tasks: is the dataset's graph and labelling read off the embedding space as it is?

- `knn`: leave-one-out kNN of each label column over every record (`seqstruct.evaluation.structure.knn_loo`).
- `link`, `protein-link`: held-out link retrieval (`seqstruct.evaluation.structure.link_retrieval`).

Both judge the embedding with nothing fitted, over every record of every split: the graph's nodes are
the records of all splits, and held-out nodes are ranked among (and vote for) the training ones. The
held-out nodes (the link queries) are the ids of heldout_nodes.txt when the dataset has that file, else
the nodes with an edge in graph_heldout.tsv and none in graph.tsv.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqstruct.data.graph import Graph, read_edge_list
from seqstruct.data.prepared import TRAIN, Prepared
from seqstruct.evaluation.search import METRICS
from seqstruct.evaluation.structure import knn_loo, link_retrieval
from seqstruct.evaluation.tasks.registry import Method, TaskResult, records, register_task, split_column
from seqstruct.io import open_text

_SHOWN = 5  # ids quoted in an error before "..."


def _named(ids: Sequence[str]) -> str:
    shown = ", ".join(repr(i) for i in ids[:_SHOWN])
    return f"{len(ids)}: {shown}" + (" ..." if len(ids) > _SHOWN else "")


def _metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")
    return metric


def heldout_nodes(data_dir: str | Path, train: Graph, heldout: Graph) -> tuple[np.ndarray, str]:
    """Indices of the held-out nodes and the rule that chose them: the ids listed in
    `data_dir/heldout_nodes.txt` when it exists ("heldout_nodes.txt"), else the nodes with an edge in
    the held-out graph and none in the training graph ("derived")."""
    listed = Path(data_dir) / "heldout_nodes.txt"
    if not listed.is_file():
        chosen = (heldout.degrees() > 0) & (train.degrees() == 0)  # [N]
        return np.flatnonzero(chosen), "derived"
    index = {node: i for i, node in enumerate(train.nodes)}
    with open_text(listed) as handle:
        ids = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    unknown = [node for node in ids if node not in index]
    if unknown:
        raise ValueError(f"{listed}: ids that match no record, {_named(unknown)}")
    return np.unique(np.array([index[node] for node in ids], dtype=np.int64)), listed.name


@register_task("knn", dataset="manifold", kind="protein")
class KnnTask:
    """Leave-one-out kNN of each label column: every record takes the vote of its `neighbours` nearest
    other records (`knn_vote`); accuracy, macro one-vs-rest AUROC of the vote fractions, and chance (the
    majority-class rate).

    columns: the label columns (default: every column dataset.json names); every record needs a label.
    Metrics are keyed by label column where other tasks key them by split.
    """

    def __init__(self, columns: Sequence[str] = (), neighbours: int = 3, metric: str = "cosine") -> None:
        if neighbours < 1:
            raise ValueError(f"neighbours must be at least 1; got {neighbours}")
        self.columns, self.neighbours, self.metric = tuple(columns), neighbours, _metric(metric)

    def run(self, data: Prepared, method: Method, seed: int) -> TaskResult:
        names = list(self.columns) or list(data.info.columns)
        if not names:
            raise ValueError(f"{data.path}: dataset.json names no label column; give columns=[NAME, ...]")
        ids, texts = records(data)
        labels = {
            name: [v for split in data.splits for v in split_column(data, split, name)] for name in names
        }
        for name, values in labels.items():
            empty = [node for node, value in zip(ids, values, strict=True) if value is None or value == ""]
            if empty:
                raise ValueError(f"{data.path}: records without a {name!r} label, {_named(empty)}")
        x = method.embed(texts, data.info.kind, ids=ids)  # [N, D]
        metrics, counts = {}, {"neighbours": self.neighbours, "metric": self.metric}
        for name, values in labels.items():
            found = knn_loo(x, np.asarray(values, dtype=str), k=self.neighbours, metric=self.metric)
            metrics[name] = {key: found[key] for key in ("accuracy", "auroc", "chance")}
            counts[name] = {key: found[key] for key in ("n", "classes", "auroc_classes", "singletons")}
        return TaskResult(metrics, counts)


@register_task("link", dataset="manifold", kind="protein")
@register_task("protein-link", dataset="swissprot-go", kind="protein")
@register_task("go-link", dataset="go-text", kind="text")
@register_task("wordnet-link", dataset="wordnet", kind="text")
class LinkTask:
    """Held-out link retrieval: each node of heldout_nodes.txt ranks every other record of the dataset (all
    splits) by similarity; its relevant ones are its neighbours in graph_heldout.tsv. Training-graph
    neighbours of a query, if any, are left out of its ranking (neither hit nor miss).

    candidates: "all" (every record, the synthetic protocol), "heldout" (only records outside train: cheaper,
    and easier, since no training record can crowd the answers out), or "both": one embedding of every
    record scored both ways, under the metric keys "heldout" (all candidates) and "heldout-pool"."""

    def __init__(
        self,
        ndcg_k: int = 10,
        ks: Sequence[int] = (1, 5, 10),
        candidates: str = "all",
        metric: str = "cosine",
    ) -> None:
        if candidates not in ("all", "heldout", "both"):
            raise ValueError(f"candidates must be 'all', 'heldout' or 'both'; got {candidates!r}")
        self.ndcg_k, self.ks, self.candidates, self.metric = ndcg_k, tuple(ks), candidates, _metric(metric)

    def run(self, data: Prepared, method: Method, seed: int) -> TaskResult:
        if not data.heldout_graph_path.is_file():
            raise FileNotFoundError(f"{data.path}: no graph_heldout.tsv, so no held-out links to retrieve")
        ids, texts = records(data)
        heldout, _ = read_edge_list(data.heldout_graph_path, ids)
        if data.graph_path.is_file():
            train, _ = read_edge_list(data.graph_path, ids)
        else:
            train = Graph(tuple(ids), np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float32))
        outside = set(ids) - set(data.split(TRAIN)["id"])
        pool = np.array([i for i, node in enumerate(ids) if node in outside], dtype=np.int64)  # [P]
        if self.candidates == "heldout":  # embed only the pool: the point of the cheaper variant
            heldout, train = heldout.subgraph(pool), train.subgraph(pool)
            ids, texts = [ids[i] for i in pool], [texts[i] for i in pool]
        x = method.embed(texts, data.info.kind, ids=ids)  # [N, D]
        metrics, counts = {}, {"heldout_nodes": 0}
        pools = {"heldout": None} if self.candidates != "both" else {"heldout": None, "heldout-pool": pool}
        for key, keep in pools.items():
            found, n_queries, rule = self._rank(data, x, heldout, train, keep)
            metrics[key] = {k: v for k, v in found.items() if isinstance(v, float)}
            counts[key] = {"queries": found["queries"], "skipped": found["skipped"]}
            counts[key]["candidates"] = (len(ids) if keep is None else len(keep)) - 1
            counts["heldout_nodes"] = max(counts["heldout_nodes"], n_queries)
        if len(pools) == 1:  # one pool: its counts at the top level, as before "both" existed
            counts |= counts.pop("heldout")
        counts |= {"candidate_pool": self.candidates, "metric": self.metric, "heldout_rule": rule}
        return TaskResult(metrics, counts)

    def _rank(
        self, data: Prepared, x: np.ndarray, heldout: Graph, train: Graph, keep: np.ndarray | None
    ) -> tuple[dict, int, str]:
        """Link retrieval among the rows `keep` of x (None: all), the graphs restricted alike."""
        if keep is not None:
            x, heldout, train = x[keep], heldout.subgraph(keep), train.subgraph(keep)
        queries, rule = heldout_nodes(data.path, train, heldout)
        if not len(queries):
            raise ValueError(f"{data.path}: no held-out nodes (by rule {rule!r}) to query")
        true, known = heldout.neighbours(), train.neighbours()
        found = link_retrieval(
            x,
            queries,
            [true[q] for q in queries],
            ks=self.ks,
            exclude=[known[q] for q in queries],
            metric=self.metric,
            ndcg_k=self.ndcg_k,
        )
        return found, len(queries), rule
