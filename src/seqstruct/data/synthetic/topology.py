"""The `topology` generator: a cycle with houses, triangles and stars attached; motif, role and ego-graph
labels.

`topology` (labels `motif`, `role`, `ego`): a cycle of `cycle_length` nodes with `houses` houses (a
square base-top plus a roof on the top pair, attached by a base node), `triangles` triangles (attached
by one corner) and `stars` stars (a centre with `star_leaves` leaves, attached by the centre), each
attached by one edge to its own random cycle node.
    motif  the structure a node belongs to: cycle | house | triangle | star;
    role   its structural role: cycle, cycle-attachment (carries a motif), house-base, house-top,
           house-roof, triangle-attached, triangle-free, star-centre, star-leaf;
    ego    the isomorphism class of its 1-hop ego graph (the node, its neighbours and every edge among
           them). The ego graph is a cone over the neighbours' induced subgraph H, so its class is H's
           class. The name is `d<k>:<H degrees>`: k neighbours and their degrees within H, sorted
           descending (e.g. `d3:1,1,0` is a node with three neighbours of which two are linked). That is
           H's degree sequence, which pins the class down for k <= 4; where two non-isomorphic H share a
           name (k >= 5), an exact canonical form of H (colour refinement, then the smallest adjacency
           string over the orderings it allows) tells them apart and `#1`, `#2`, ... is appended in the
           order of those forms.
s_i concatenates three blocks of signal_dim dims: one fixed random unit vector per motif, per role and
per ego class (drawn from the seed and the class name), each block scaled by 1/sqrt(3), so every label
is in the sequence with equal weight. Graph neighbours share their motif (aligned with the graph) but
often differ in role and ego class (not aligned): that contrast is what the experiment probes.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from seqstruct.data.graph import Graph
from seqstruct.data.synthetic.sequences import (
    GRAPH_STREAM,
    SequenceConfig,
    SyntheticDataset,
    assemble,
    check_common,
    class_vectors,
    rng_for,
)

_CANONICAL_LIMIT = 100_000  # orderings tried for one ego graph's canonical form before giving up


@dataclass
class TopologyConfig(SequenceConfig):
    cycle_length: int = 60  # nodes on the cycle; at least the number of motifs (one per cycle node)
    houses: int = 10  # 5-node houses, attached by a base node
    triangles: int = 10  # triangles, attached by one corner
    stars: int = 10  # stars, attached by the centre
    star_leaves: int = 4  # leaves per star


def canonical_form(adjacency: np.ndarray) -> str:
    """An exact canonical string of a small graph [k, k] bool: equal iff the graphs are isomorphic.

    Colour refinement with colours named by their sorted signatures is isomorphism-invariant; the
    smallest upper-triangle adjacency string over all orderings that list colour classes in colour
    order is then a complete invariant. A class of mutual twins (same neighbours apart from each other)
    gives the same string in every order, so one order is tried for it.
    """
    k = len(adjacency)
    colours = adjacency.sum(axis=1)
    while True:
        signatures = [(int(colours[v]), tuple(sorted(colours[adjacency[v]].tolist()))) for v in range(k)]
        rank = {signature: r for r, signature in enumerate(sorted(set(signatures)))}
        refined = np.array([rank[s] for s in signatures], dtype=np.int64)
        stable = len(set(refined.tolist())) == len(set(colours.tolist()))
        colours = refined
        if stable:
            break
    options = []
    for colour in sorted(set(colours.tolist())):
        members = np.flatnonzero(colours == colour).tolist()
        twins = all(
            np.array_equal(np.delete(adjacency[u], [u, v]), np.delete(adjacency[v], [u, v]))
            for u, v in itertools.combinations(members, 2)
        )
        options.append([members] if twins else list(itertools.permutations(members)))
    if math.prod(len(o) for o in options) > _CANONICAL_LIMIT:
        raise ValueError(f"ego graph with {k} neighbours is too symmetric for an exact canonical form")
    upper = np.triu_indices(k, k=1)
    best = min(
        "".join("1" if x else "0" for x in adjacency[np.ix_(order, order)][upper])
        for order in (list(itertools.chain(*parts)) for parts in itertools.product(*options))
    )
    return f"{k}:{best}"


def ego_classes(graph: Graph) -> list[str]:
    """Per node, the isomorphism class of its 1-hop ego graph as `d<k>:<H degrees>` (module docstring)."""
    neighbours = graph.neighbours()
    adjacent = [set(near.tolist()) for near in neighbours]
    names, forms = [], []
    for near in neighbours:
        near = near.tolist()
        sub = np.zeros((len(near), len(near)), dtype=bool)  # [k, k] adjacency among the neighbours
        for row, a in enumerate(near):
            sub[row] = [b in adjacent[a] for b in near]
        degrees = sorted(sub.sum(axis=1).tolist(), reverse=True)
        names.append(f"d{len(near)}:" + ",".join(map(str, degrees)))
        forms.append(canonical_form(sub))
    shared: dict[str, set[str]] = {}
    for name, form in zip(names, forms, strict=True):
        shared.setdefault(name, set()).add(form)
    return [
        name if len(shared[name]) == 1 else f"{name}#{sorted(shared[name]).index(form) + 1}"
        for name, form in zip(names, forms, strict=True)
    ]


def _motif(kind: str, leaves: int) -> tuple[list[str], list[tuple[int, int]]]:
    """Roles of a motif's nodes (node 0 attaches to the cycle) and its internal edges."""
    if kind == "house":  # 0, 1 base; 2, 3 top (above 0, 1); 4 roof
        return (
            ["house-base", "house-base", "house-top", "house-top", "house-roof"],
            [(0, 1), (0, 2), (1, 3), (2, 3), (2, 4), (3, 4)],
        )
    if kind == "triangle":
        return ["triangle-attached", "triangle-free", "triangle-free"], [(0, 1), (0, 2), (1, 2)]
    return ["star-centre"] + ["star-leaf"] * leaves, [(0, i) for i in range(1, leaves + 1)]


def generate_topology(config: TopologyConfig) -> SyntheticDataset:
    """A cycle with houses, triangles and stars attached; labels `motif`, `role`, `ego`."""
    check_common("topology", config)
    counts = {"house": config.houses, "triangle": config.triangles, "star": config.stars}
    if min(counts.values()) < 0 or config.star_leaves < 1:
        raise ValueError(f"topology: motif counts must be >= 0 and star_leaves >= 1, got {counts}")
    total = sum(counts.values())
    if config.cycle_length < max(3, total):
        raise ValueError(
            f"topology: cycle_length={config.cycle_length} must be at least 3 and at least the number "
            f"of motifs ({total}), one per cycle node"
        )
    cycle = config.cycle_length
    motif = ["cycle"] * cycle
    role = ["cycle"] * cycle
    edges = [(i, (i + 1) % cycle) for i in range(cycle)]
    hosts = rng_for(config.seed, GRAPH_STREAM).choice(cycle, size=total, replace=False).tolist()
    kinds = [kind for kind, count in counts.items() for _ in range(count)]
    for kind, host in zip(kinds, hosts, strict=True):
        roles, inner = _motif(kind, config.star_leaves)
        start = len(motif)
        motif += [kind] * len(roles)
        role += roles
        edges += [(start + a, start + b) for a, b in inner]
        edges.append((host, start))
        role[host] = "cycle-attachment"
    n = len(motif)
    edge_array = np.sort(np.asarray(edges, dtype=np.int64), axis=1)
    ego = ego_classes(Graph(tuple(map(str, range(n))), edge_array, np.ones(len(edges), np.float32)))

    labels = {"motif": np.asarray(motif), "role": np.asarray(role), "ego": np.asarray(ego)}
    blocks = []
    for column, values in labels.items():
        vectors = class_vectors(sorted(set(values.tolist())), config.signal_dim, config.seed, column)
        blocks.append(np.stack([vectors[v] for v in values.tolist()]) / math.sqrt(len(labels)))
    signal = np.concatenate(blocks, axis=1)  # [N, 3 * signal_dim]
    details = {"motif_counts": counts, "hosts": len(hosts)}
    return assemble("topology", config, edge_array, labels, signal, details)
