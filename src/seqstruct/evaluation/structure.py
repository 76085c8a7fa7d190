"""Does the embedding space keep the structure? Label and link metrics read without fine-tuning.

Structure-inducing pretraining (McDermott et al., "Structure-inducing pre-training", Nature Machine
Intelligence 2023) trains encoders so that nearness in embedding space follows a graph over the
sequences. These metrics read that nearness directly, with no classifier trained on top:

- `knn_vote`: the class of a row from its k nearest neighbours' classes: the one kNN vote of the package
  (the `knn` task and the single-label tasks' classifier=knn both use it).
- `knn_loo`: leave-one-out k-nearest-neighbour classification of a node label. Each node is predicted
  by the vote of its k nearest *other* nodes. Accuracy, and macro one-vs-rest AUROC of the vote
  fractions, beside the majority-class rate as the chance level.
- `link_retrieval`: held-out nodes as queries, every other node as a candidate ranked by similarity;
  a candidate is relevant when the held-out graph joins it to the query. MRR, nDCG@10, precision@k,
  recall@k.

Similarities and rankings are those of `seqstruct.evaluation.search` (cosine or negated Euclidean
distance, exact, blocked; equal similarities ordered by node index, lower first). The tasks that read
these from a prepared dataset are `knn` and `link` (`seqstruct.evaluation.tasks.structure`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from seqstruct.evaluation.search import Vectors, blocks, nearest_neighbours, similarities, top_k

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------
# Labels: leave-one-out kNN
# ---------------------------------------------------------------------------------------------------


def knn_vote(neighbour_classes: np.ndarray, neighbour_similarities: np.ndarray) -> np.ndarray:
    """Predicted class per row [N] from its neighbours' classes [N, k] (ints, nearest first) and
    similarities [N, k].

    The tie rule: most votes wins; a tie in votes goes to the tied class whose votes have the larger summed
    similarity, and a tie in that too to the class of the nearest neighbour among the tied classes (the
    first slot, as the search orders equal similarities by index). Works on [N, k, k] only, never
    [N, classes], so that thousands of classes cost nothing.

    >>> knn_vote(np.array([[1, 0, 0]]), np.array([[0.9, 0.8, 0.7]]))
    array([0])
    """
    if neighbour_classes.shape != neighbour_similarities.shape or neighbour_classes.ndim != 2:
        raise ValueError(
            f"neighbour classes and similarities must be [N, k] of one shape; got "
            f"{neighbour_classes.shape}, {neighbour_similarities.shape}"
        )
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
    embeddings: Vectors,
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
    if len(labels) != embeddings.shape[0]:
        raise ValueError(f"{len(labels)} labels for {embeddings.shape[0]} embeddings")
    names, y = np.unique(labels, return_inverse=True)  # y: [N] class index
    sizes = np.bincount(y, minlength=len(names))  # [C]
    neighbours, closeness = nearest_neighbours(embeddings, k, metric, block_size)
    neighbour_classes = y[neighbours]  # [N, k]
    predicted = knn_vote(neighbour_classes, closeness)
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


def _first_hit_rank(scores: np.ndarray, relevant: np.ndarray) -> int:
    """1-based rank, among the candidates of scores [N] (-inf: not one), of the best relevant."""
    values = scores[relevant]  # [R]
    best = np.lexsort((relevant, -values))[0]  # most similar, then lowest index
    value, index = values[best], relevant[best]
    ahead = (scores > value).sum() + (scores[:index] == value).sum()
    return int(ahead) + 1


def link_retrieval(
    embeddings: Vectors,
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
    n = embeddings.shape[0]
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
    x = embeddings.tocsr() if sp.issparse(embeddings) else np.asarray(embeddings)  # [N, D]
    score = similarities(x[queries], x, metric)
    for block in blocks(len(queries), n, block_size):
        rows, sims = queries[block], score(block)  # [B], [B, N]
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
