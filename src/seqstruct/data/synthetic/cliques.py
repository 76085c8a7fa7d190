"""The `cliques` generator: disjoint topic cliques with some edges rewired across topics.

`cliques` (label `topic`): `topics` disjoint cliques of `clique_size` nodes. With noise rate p, each
intra-clique edge is, with probability p, rewired: one of its ends (chosen at random) keeps it and the
other end is replaced by a uniformly random node of another clique (redrawn if that edge already
exists, so the edge count is kept). s_i is the topic's fixed random unit vector in R^signal_dim, plus
per-node Gaussian jitter of expected norm `jitter` (0 by default: every node of a topic shares a chain).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from seqstruct.data.synthetic.sequences import (
    GRAPH_STREAM,
    JITTER_STREAM,
    SequenceConfig,
    SyntheticDataset,
    assemble,
    check_common,
    class_names,
    class_vectors,
    rng_for,
)


@dataclass
class CliquesConfig(SequenceConfig):
    topics: int = 20  # cliques, one per topic
    clique_size: int = 50  # nodes per clique (degree clique_size - 1 before rewiring)
    noise: float = 0.1  # p: share of intra-clique edges rewired to a random node of another clique
    jitter: float = 0.0  # expected norm of per-node Gaussian noise on the unit topic vector


def generate_cliques(config: CliquesConfig) -> SyntheticDataset:
    """Disjoint topic cliques with a share `noise` of edges rewired across topics; label `topic`."""
    check_common("cliques", config)
    if config.topics < 2 or config.clique_size < 2:
        raise ValueError(
            f"cliques: need topics >= 2 and clique_size >= 2, got {config.topics} and {config.clique_size}"
        )
    if not 0 <= config.noise <= 1:
        raise ValueError(f"cliques: noise must be in [0, 1], got {config.noise}")
    if config.jitter < 0:
        raise ValueError(f"cliques: jitter must be >= 0, got {config.jitter}")
    size, n = config.clique_size, config.topics * config.clique_size
    topic = np.repeat(np.arange(config.topics), size)  # [N]
    a, b = np.triu_indices(size, k=1)
    starts = np.arange(config.topics)[:, None] * size  # [T, 1]
    edges = np.stack([(starts + a).ravel(), (starts + b).ravel()], axis=1)  # [E, 2], clique by clique

    rng = rng_for(config.seed, GRAPH_STREAM)
    rewired = np.flatnonzero(rng.random(len(edges)) < config.noise)
    keepers = edges[rewired, rng.integers(0, 2, size=len(rewired))]  # the end that keeps the edge
    present = set(map(tuple, edges.tolist()))
    for index, keep in zip(rewired.tolist(), keepers.tolist(), strict=True):
        own = topic[keep] * size
        while True:  # a repeat of an earlier rewired edge is redrawn, so the edge count is kept
            other = int(rng.integers(n - size))
            other += size if other >= own else 0  # skip the node's own clique
            key = (min(keep, other), max(keep, other))
            if key not in present:
                break
        present.discard(tuple(edges[index].tolist()))
        present.add(key)
        edges[index] = key

    names = class_names("t", config.topics)
    vectors = class_vectors(names, config.signal_dim, config.seed, "topic")
    signal = np.stack([vectors[names[t]] for t in topic])  # [N, r]
    if config.jitter > 0:
        noise = rng_for(config.seed, JITTER_STREAM).normal(size=signal.shape)
        signal = signal + config.jitter * noise / math.sqrt(config.signal_dim)
    labels = {"topic": np.asarray(names)[topic]}
    details = {"rewired_edges": len(rewired)}
    return assemble("cliques", config, edges, labels, signal, details)
