"""Does the embedding space keep the structure? Label and link evaluation without fine-tuning.

Structure-inducing pretraining (McDermott et al., "Structure-inducing pre-training", Nature Machine
Intelligence 2023) trains encoders so that nearness in embedding space follows a graph over the
sequences. These metrics read that nearness directly, with no classifier trained on top:

- `knn_loo`: leave-one-out k-nearest-neighbour classification of a node label. Each node is predicted
  by the vote of its k nearest *other* nodes. Accuracy, and macro one-vs-rest AUROC of the vote
  fractions, beside the majority-class rate as the chance level.
- `link_retrieval`: held-out nodes as queries, every other node as a candidate ranked by similarity;
  a candidate is relevant when the held-out graph joins it to the query. MRR, nDCG@10, precision@k,
  recall@k.

Nearest means most similar: cosine similarity, or the negated Euclidean distance. Rankings are exact and
deterministic: equal similarities are ordered by node index (lower first). Similarities are float64 and
computed a block of query rows at a time ([block, N], never N x N), so 100k nodes fit in memory.

`evaluate_embeddings` runs both on a dataset directory: `sequences.fasta`, `labels.tsv` (see
`seqstruct.data.labels`), `graph.tsv` (training edges) and `graph_heldout.tsv` (edges touching held-out
nodes), in the edge-list format of `seqstruct.data.graph`. The held-out nodes are listed one id a line in
`heldout_nodes.txt` when that file exists; otherwise they are the nodes with an edge in
`graph_heldout.tsv` and none in `graph.tsv` (nodes the encoder never saw joined to anything).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from seqstruct.data.fasta import read_fasta
from seqstruct.data.graph import Graph, read_edge_list
from seqstruct.data.labels import read_labels
from seqstruct.io import open_text

logger = logging.getLogger(__name__)

METRICS = ("cosine", "euclidean")
TASKS = ("knn", "link")
_BLOCK_ELEMENTS = 2**24  # similarities held at once by default (128 MiB of float64)
_SHOWN = 5  # ids quoted in an error before "..."


# ---------------------------------------------------------------------------------------------------
# Exact blocked similarity search
# ---------------------------------------------------------------------------------------------------


def _check(embeddings: np.ndarray, metric: str) -> np.ndarray:
    """[N, D] float64 copy, checked; the metric name checked too."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be [N, D], got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        raise ValueError(f"{len(bad)} embeddings are not finite, first rows {bad[:_SHOWN].tolist()}")
    return x


def similarity_blocks(
    embeddings: np.ndarray, rows: np.ndarray, metric: str = "cosine", block_size: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (row indices [B], similarities [B, N]) of `rows` against every node, B <= block_size.

    Cosine of a zero vector is taken as 0 (it has no direction). Euclidean similarity is the negated
    distance, so that larger is nearer for both metrics.
    """
    x = _check(embeddings, metric)
    n = len(x)
    rows = np.asarray(rows, dtype=np.int64)
    block = block_size or max(1, _BLOCK_ELEMENTS // max(n, 1))
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)  # [N, 1]
        x = x / np.where(norms > 0, norms, 1.0)
    else:
        squares = np.einsum("nd,nd->n", x, x)  # [N]
    for start in range(0, len(rows), block):
        chunk = rows[start : start + block]
        dots = x[chunk] @ x.T  # [B, N]
        if metric == "cosine":
            yield chunk, dots
        else:
            # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, clipped where rounding makes it slightly negative.
            distances = squares[chunk, None] + squares[None, :] - 2.0 * dots  # [B, N]
            yield chunk, -np.sqrt(np.maximum(distances, 0.0))


def top_k(similarities: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """similarities [B, N] (-inf: not a candidate) -> (indices [B, k], similarities [B, k]), most
    similar first; equal similarities in index order, also where a tie straddles the k-th place."""
    _, n = similarities.shape
    if not 0 < k <= n:
        raise ValueError(f"k={k} must be between 1 and the {n} candidates")
    picked = np.argpartition(similarities, n - k, axis=1)[:, n - k :]  # [B, k] the k largest, unordered
    kth = np.take_along_axis(similarities, picked, axis=1).min(axis=1)  # [B]
    # argpartition chooses arbitrarily among values equal to the k-th; redo those rows by index order.
    straddling = np.flatnonzero((similarities >= kth[:, None]).sum(axis=1) > k)
    for row in straddling:
        above = np.flatnonzero(similarities[row] > kth[row])
        level = np.flatnonzero(similarities[row] == kth[row])[: k - len(above)]
        picked[row] = np.concatenate([above, level])
    values = np.take_along_axis(similarities, picked, axis=1)  # [B, k]
    order = np.lexsort((picked, -values), axis=1)  # by similarity descending, then index
    return np.take_along_axis(picked, order, axis=1), np.take_along_axis(values, order, axis=1)


def nearest_neighbours(
    embeddings: np.ndarray, k: int, metric: str = "cosine", block_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each node's k nearest other nodes: (indices [N, k], similarities [N, k]), nearest first."""
    n = len(embeddings)
    if not 0 < k < n:
        raise ValueError(f"k={k} must be between 1 and N-1={n - 1}")
    indices = np.empty((n, k), dtype=np.int64)
    values = np.empty((n, k), dtype=np.float64)
    for rows, sims in similarity_blocks(embeddings, np.arange(n), metric, block_size):
        sims[np.arange(len(rows)), rows] = -np.inf  # a node is never its own neighbour
        indices[rows], values[rows] = top_k(sims, k)
    return indices, values


# ---------------------------------------------------------------------------------------------------
# Labels: leave-one-out kNN
# ---------------------------------------------------------------------------------------------------


def knn_vote(neighbour_classes: np.ndarray, neighbour_similarities: np.ndarray) -> np.ndarray:
    """Predicted class per node [N] from its neighbours' classes [N, k] (ints, nearest first) and
    similarities [N, k].

    Most votes wins; a tie goes to the tied class whose votes have the larger summed similarity, and a
    tie in that too to the class of the nearest neighbour among the tied classes. Works on [N, k, k]
    only, never [N, classes], so that thousands of classes cost nothing.
    """
    n, k = neighbour_classes.shape
    same = neighbour_classes[:, :, None] == neighbour_classes[:, None, :]  # [N, k, k] slot j, slot j'
    votes = same.sum(axis=2)  # [N, k] votes of slot j's class
    # Slots of one class sum the same masked terms in the same order, so their sums are equal exactly.
    sums = (same * neighbour_similarities[:, None, :]).sum(axis=2)  # [N, k]
    slots = np.broadcast_to(np.arange(k), (n, k))
    best = np.lexsort((slots, -sums, -votes), axis=1)[:, 0]  # [N] most votes, then sum, then nearest
    return neighbour_classes[np.arange(n), best]


def vote_auroc(neighbour_classes: np.ndarray, y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """One-vs-rest AUROC [len(classes)] of each of `classes` (indices) for labels y [N], each node scored
    for class c by its neighbours' votes for c (neighbour_classes [N, k]; the vote fraction ranks the same).

    The votes take k + 1 values, so each class's scores are two histograms, its members' and the rest's,
    and AUROC is the Mann-Whitney statistic on them: P(member scores above non-member) + P(tie) / 2,
    which is what sklearn's `roc_auc_score` computes (the tests hold it to that), in O(N k) for all
    classes together rather than a sort of N scores per class. Each class needs members and non-members.
    """
    n, k = neighbour_classes.shape
    c_count = int(max(y.max(), neighbour_classes.max())) + 1
    own = (neighbour_classes == y[:, None]).sum(axis=1)  # [N] votes for a node's own class
    members = np.zeros((c_count, k + 1))
    np.add.at(members, (y, own), 1)  # [C, k+1] members of c by their votes for c
    # Every node by its votes for c, from each class's first slot in the row (a vote of 0 is the rest).
    votes = (neighbour_classes[:, :, None] == neighbour_classes[:, None, :]).sum(axis=2)  # [N, k]
    first = np.ones((n, k), dtype=bool)
    for j in range(1, k):
        first[:, j] = (neighbour_classes[:, :j] != neighbour_classes[:, j : j + 1]).all(axis=1)
    everyone = np.zeros((c_count, k + 1))
    np.add.at(everyone, (neighbour_classes[first], votes[first]), 1)  # [C, k+1], column 0 still empty
    everyone[:, 0] = n - everyone[:, 1:].sum(axis=1)
    pos, neg = members[classes], (everyone - members)[classes]  # [S, k+1] each
    below = np.cumsum(neg, axis=1) - neg  # [S, k+1] non-members with fewer votes
    wins = (pos * (below + 0.5 * neg)).sum(axis=1)  # [S]
    return wins / (pos.sum(axis=1) * neg.sum(axis=1))


def knn_loo(
    embeddings: np.ndarray,
    labels: np.ndarray,
    k: int = 3,
    metric: str = "cosine",
    block_size: int | None = None,
) -> dict:
    """Leave-one-out kNN accuracy and AUROC of `labels` [N] from `embeddings` [N, D].

    Each node's k nearest other nodes vote (`knn_vote` for ties). AUROC is macro one-vs-rest over the
    classes, scoring each node for class c by the fraction of its k neighbours in c (the plain vote
    fraction, as a uniform-weight kNN classifier's probability: equal-vote ties count half in AUROC).
    Classes with a single member are left out of the AUROC average: left out, that member can have no
    neighbour of its class, so its AUROC would measure leave-one-out itself, not the embedding. They stay
    in the accuracy, as errors. AUROC is None when no class has two members or there is one class only.

    Returns accuracy, auroc, n, classes (distinct labels), auroc_classes (those averaged), singletons
    (single-member classes), chance (the majority-class rate), k, metric.
    """
    labels = np.asarray(labels)
    if len(labels) != len(embeddings):
        raise ValueError(f"{len(labels)} labels for {len(embeddings)} embeddings")
    names, y = np.unique(labels, return_inverse=True)  # y: [N] class index
    sizes = np.bincount(y, minlength=len(names))  # [C]
    neighbours, similarities = nearest_neighbours(embeddings, k, metric, block_size)
    neighbour_classes = y[neighbours]  # [N, k]
    predicted = knn_vote(neighbour_classes, similarities)
    scored = np.flatnonzero(sizes >= 2) if len(names) >= 2 else np.array([], dtype=np.int64)
    aurocs = vote_auroc(neighbour_classes, y, scored)  # [S]
    return {
        "accuracy": float((predicted == y).mean()),
        "auroc": float(aurocs.mean()) if len(aurocs) else None,
        "n": len(y),
        "classes": len(names),
        "auroc_classes": len(scored),
        "singletons": int((sizes == 1).sum()),
        "chance": float(sizes.max() / len(y)),
        "k": k,
        "metric": metric,
    }


# ---------------------------------------------------------------------------------------------------
# Links: retrieval of held-out neighbours
# ---------------------------------------------------------------------------------------------------


def _first_hit_rank(similarities: np.ndarray, relevant: np.ndarray) -> int:
    """1-based rank, among the candidates of similarities [N] (-inf: not one), of the best relevant."""
    values = similarities[relevant]  # [R]
    best = np.lexsort((relevant, -values))[0]  # most similar, then lowest index
    value, index = values[best], relevant[best]
    ahead = (similarities > value).sum() + (similarities[:index] == value).sum()
    return int(ahead) + 1


def link_retrieval(
    embeddings: np.ndarray,
    queries: np.ndarray,
    relevant: Sequence[np.ndarray],
    ks: Sequence[int] = (1, 5, 10),
    exclude: Sequence[np.ndarray] | None = None,
    metric: str = "cosine",
    ndcg_k: int = 10,
    block_size: int | None = None,
) -> dict:
    """Rank every other node for each query node by similarity; score the ranks of its relevant nodes.

    queries [Q] node indices; relevant[i] the indices relevant to queries[i] (its true neighbours);
    exclude[i] indices dropped from its ranking (e.g. its training neighbours, neither hit nor miss).
    The query is never a candidate, and relevant nodes that are the query or excluded are not counted.
    Queries left with no relevant node are skipped and counted in `skipped`.

    Per query, averaged over the scored ones: mrr, the reciprocal rank of the first relevant node over
    the whole ranking; ndcg@10, binary relevance with log2 discounts, normalised by the ideal DCG of
    min(|relevant|, 10) hits; precision@k (hits in the top k over k) and recall@k (over |relevant|).
    """
    n = len(embeddings)
    queries = np.asarray(queries, dtype=np.int64)
    if len(relevant) != len(queries) or (exclude is not None and len(exclude) != len(queries)):
        raise ValueError("relevant (and exclude) need one array per query")
    if min(*ks, ndcg_k) < 1:
        raise ValueError(f"cut-offs must be positive, got ks={tuple(ks)}, ndcg_k={ndcg_k}")
    depth = min(max(*ks, ndcg_k), n - 1)  # ranks ever looked at beyond the first hit
    discounts = 1.0 / np.log2(np.arange(2, ndcg_k + 2))  # [ndcg_k]: rank 1 -> 1/log2(2)
    reciprocal, ndcg, sizes = [], [], []  # per scored query
    hits_at: dict[int, list[int]] = {k: [] for k in ks}  # k -> per scored query, hits in the top k
    done = 0  # queries of earlier blocks
    for rows, sims in similarity_blocks(embeddings, queries, metric, block_size):
        sims[np.arange(len(rows)), rows] = -np.inf  # the query is never its own hit
        targets = []
        for row, query in enumerate(rows):
            target = np.setdiff1d(np.asarray(relevant[done + row], dtype=np.int64), [query])
            if exclude is not None and len(exclude[done + row]):
                dropped = np.asarray(exclude[done + row], dtype=np.int64)
                sims[row, dropped] = -np.inf
                target = np.setdiff1d(target, dropped)
            targets.append(target)
        ranked, ranked_sims = top_k(sims, depth)  # [B, depth]
        for row, target in enumerate(targets):
            if not len(target):
                continue
            reciprocal.append(1.0 / _first_hit_rank(sims[row], target))
            # Excluded nodes (-inf) fill the tail only when fewer candidates than `depth` remain.
            hit = np.isin(ranked[row], target) & np.isfinite(ranked_sims[row])  # [depth]
            ideal = discounts[: min(len(target), ndcg_k)].sum()
            ndcg.append((hit[:ndcg_k] * discounts[: min(depth, ndcg_k)]).sum() / ideal)
            for k in ks:
                hits_at[k].append(int(hit[:k].sum()))
            sizes.append(len(target))
        done += len(rows)
    result: dict = {"queries": len(sizes), "skipped": len(queries) - len(sizes), "metric": metric}
    if not sizes:
        logger.warning("no query has a relevant node: link retrieval has nothing to score")
        return result | {"mrr": None, f"ndcg@{ndcg_k}": None}
    result["mrr"] = float(np.mean(reciprocal))
    result[f"ndcg@{ndcg_k}"] = float(np.mean(ndcg))
    for k in ks:
        hits = np.asarray(hits_at[k], dtype=np.float64)  # [scored]
        result[f"precision@{k}"] = float((hits / k).mean())
        result[f"recall@{k}"] = float((hits / np.asarray(sizes)).mean())
    return result


# ---------------------------------------------------------------------------------------------------
# A dataset directory
# ---------------------------------------------------------------------------------------------------


def _named(ids: Sequence[str]) -> str:
    shown = ", ".join(repr(i) for i in ids[:_SHOWN])
    return f"{len(ids)}: {shown}" + (" ..." if len(ids) > _SHOWN else "")


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


def _align(ids: Sequence[str], embeddings: np.ndarray, records: Sequence[str], fasta: Path) -> np.ndarray:
    """The rows of `embeddings` [M, D] for the FASTA `records`' ids, in record order: [N, D]."""
    if len(ids) != len(embeddings):
        raise ValueError(f"{len(ids)} ids for {len(embeddings)} embeddings")
    row = {node: i for i, node in enumerate(ids)}
    if len(row) != len(ids):
        raise ValueError("embedding ids must be unique")
    missing = [node for node in records if node not in row]
    if missing:
        raise ValueError(f"records of {fasta} without an embedding, {_named(missing)}")
    if len(ids) > len(records):
        logger.info("%d embeddings have no record in %s and are ignored", len(ids) - len(records), fasta)
    return np.asarray(embeddings)[[row[node] for node in records]]


def evaluate_embeddings(
    ids: Sequence[str],
    embeddings: np.ndarray,
    data_dir: str | Path,
    tasks: Sequence[str] = TASKS,
    label_columns: Sequence[str] | None = None,
    k: int = 3,
    metric: str = "cosine",
) -> dict:
    """Run `tasks` on the dataset in `data_dir` with the embeddings [M, D] of `ids` (which must cover
    the records of its sequences.fasta; the rest are ignored).

    Returns {"n": records, "knn": {label column: knn_loo metrics}, "link": link_retrieval metrics plus
    heldout_nodes and heldout_rule}, with only the tasks asked for.
    """
    unknown = [task for task in tasks if task not in TASKS]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; expected some of {TASKS}")
    data_dir = Path(data_dir)
    fasta = data_dir / "sequences.fasta"
    records = [record.id for record in read_fasta(fasta)]
    x = _align(ids, embeddings, records, fasta)  # [N, D] in record order
    result: dict = {"n": len(records)}
    if "knn" in tasks:
        labels = read_labels(data_dir / "labels.tsv", records, label_columns)
        result["knn"] = {}
        for column, values in labels.items():
            result["knn"][column] = knn_loo(x, values, k=k, metric=metric)
            logger.info("knn %s: %s", column, result["knn"][column])
    if "link" in tasks:
        train, _ = read_edge_list(data_dir / "graph.tsv", records)
        heldout, _ = read_edge_list(data_dir / "graph_heldout.tsv", records)
        queries, rule = heldout_nodes(data_dir, train, heldout)
        if not len(queries):
            raise ValueError(f"{data_dir}: no held-out nodes (by rule {rule!r}) to query")
        true, known = heldout.neighbours(), train.neighbours()
        result["link"] = link_retrieval(
            x, queries, [true[q] for q in queries], exclude=[known[q] for q in queries], metric=metric
        ) | {"heldout_nodes": len(queries), "heldout_rule": rule}
        logger.info("link: %s", result["link"])
    return result
