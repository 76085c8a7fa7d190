"""Synthetic graph datasets for structure-inducing pretraining: a graph whose every node carries a sequence.

Structure-inducing pretraining (McDermott et al., "Structure-inducing pre-training", Nature Machine
Intelligence 2023) adds a metric-learning loss over a graph of the pretraining sequences to masked-LM
pretraining. These generators make datasets where the question "does the graph loss recover a
graph-aligned label that masked-LM alone does not?" means something: each label is written into the
sequences, but only weakly, spread over the whole sequence and under a strong label-free local grammar.

Sequence model (shared by all generators)
-----------------------------------------
Each node i has a latent signal vector s_i in R^r. Its sequence is a first-order Markov chain over the
20 standard amino-acid letters `ACDEFGHIKLMNPQRSTVWY` (so the protein tokenizer works unchanged), with
transition logits

    T(s) = B + signal * sum_k s_k W_k            B, W_k: [20, 20]; row a = logits of the letter after a

- B ~ N(0, background_scale^2) is a background grammar shared by every node: masked-LM has strong
  local structure to learn that says nothing about any label.
- W_1..W_r ~ N(0, 1) are fixed signal matrices. B and W depend on the seed only (B is drawn first, so it
  does not change with r).
- Signals are centred over the nodes and scaled to unit RMS norm (sqrt(mean_i |s_i|^2) = 1) in every
  generator, so `signal` means the same everywhere: the standard deviation of the label-driven
  perturbation of each transition logit. Centring only moves the common part of s into the grammar;
  the differences between nodes, which carry the labels, are kept.
- The first letter is drawn from the node's stationary distribution (its chain run to equilibrium), so
  no position is special; lengths are uniform in [min_length, max_length].
- `signal` is small enough that one letter or bigram says little about the label: telling classes apart
  needs the counts of a whole sequence (a bigram-count nearest-neighbour classifier is well above chance
  and well below perfect at the defaults).

Node order is a seeded random permutation, so ids (`n00000`, `n00001`, ...) carry no label.

Generators
----------
`cliques` (label `topic`): `topics` disjoint cliques of `clique_size` nodes. With noise rate p, each
intra-clique edge is, with probability p, rewired: one of its ends (chosen at random) keeps it and the
other end is replaced by a uniformly random node of another clique (redrawn if that edge already
exists, so the edge count is kept). s_i is the topic's fixed random unit vector in R^signal_dim, plus
per-node Gaussian jitter of expected norm `jitter` (0 by default: every node of a topic shares a chain).

`manifold` (label `region`): `nodes` points sampled area-uniformly on a surface, linked when their
geodesic distance is at most a radius solved from `mean_degree` (see `edge_probability`):
    plane   the unit square [0, 1]^2, Euclidean distance;
    sphere  the unit sphere, great-circle distance;
    torus   the flat torus [0, 2pi)^2, distance with wrap-around in both angles;
    mobius  (theta in [0, 2pi), w in [-1, 1]) with the flat metric of the rectangle 2pi x 1 (width 1 in
            the units of theta: w / 2 is the across-strip coordinate, the proportions of the standard
            embedding below), glued with a half twist, (theta + 2pi, w) ~ (theta, -w): the distance is
            the smaller of the direct one and the one to the twisted copy across the seam.
`regions` centres are nodes' own positions (so no region is empty), seeded k-means++ style and moved
by a few k-medoids steps so that the cells are of similar size (`voronoi_centres`); each node is
labelled by its geodesically nearest centre, so regions are Voronoi cells and aligned with the graph.
The signal is a continuous embedding of the position: plane (x, y); sphere (x, y, z); torus
(cos a, sin a, cos b, sin b); Möbius ((1 + w/2 cos(theta/2)) cos theta, (1 + w/2 cos(theta/2)) sin theta,
w/2 sin(theta/2)); centred and scaled to unit RMS, then lifted to signal_dim dims by `lift`:
    none     the 2-4 dims as they are;
    linear   a fixed random linear map (equivalent to another draw of W: it adds no direction);
    fourier  fixed random Fourier features cos(e . g_j / lift_scale + b_j), g_j ~ N(0, I), b_j ~ U[0, 2pi),
             a nonlinear lift whose inner products approximate a Gaussian kernel of width lift_scale:
             W sees signal_dim directions, and nearby points get similar chains, far ones unrelated ones.

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

Output (`write_dataset`): sequences.fasta, graph.tsv (training edges: no held-out end),
graph_heldout.tsv (edges with a held-out end), heldout_nodes.txt (their ids, one a line), labels.tsv
(`id` plus the label columns), dataset.json (config, counts, degrees, class counts, held-out ids,
generator version) and README.md (a dataset card).
Everything is deterministic in the seed: the same config writes byte-identical files.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqstruct.data.fasta import FastaRecord, write_fasta
from seqstruct.data.graph import Graph, split_heldout_nodes, write_edge_list
from seqstruct.io import atomic_open

logger = logging.getLogger(__name__)

ALPHABET = "ACDEFGHIKLMNPQRSTVWY"  # the 20 standard amino acids, one token each
GENERATOR_VERSION = "seqstruct.synthetic/1"  # bump when the same config would write different files
SHAPES = ("plane", "sphere", "torus", "mobius")
LIFTS = ("none", "linear", "fourier")
MOBIUS_WIDTH = 1.0  # strip width in the units of theta (length 2pi), as in the standard 3-D embedding

# One random stream per ingredient, so that e.g. a larger graph leaves the grammar and signal matrices alone.
_GRAPH, _GRAMMAR, _CLASSES, _LIFT, _SEQUENCES, _ORDER, _JITTER = range(7)
_STATIONARY_SQUARINGS = 8  # P^(2^8): far past the mixing time of a 20-letter chain with full support
_MEDOID_STEPS = 10  # k-medoids steps after k-means++ seeding of the manifold's region centres
_CANONICAL_LIMIT = 100_000  # orderings tried for one ego graph's canonical form before giving up


def _rng(seed: int, stream: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, *key])


# ---------------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------------


@dataclass
class SequenceConfig:
    """What every generator shares: the sequence model and the held-out split."""

    seed: int = 0  # seeds graph, labels, grammar, signal matrices, sequences, node order and split
    # alpha: std of the label-driven perturbation of each transition logit. At 0.6 a bigram-count 3-NN
    # classifier gets 0.44-0.48 of 20 topics (cliques) and 0.39-0.48 of 10 plane regions over seeds 0-2
    # (chance 0.05 and ~0.1): the label is in the sequences, but not readable from a few letters.
    signal: float = 0.6
    # std of the shared grammar's logits: at 1.5 the next letter's entropy is 2.1 nats (uniform: 3.0),
    # local structure masked-LM can learn that says nothing about any label
    background_scale: float = 1.5
    min_length: int = 48  # shortest sequence, residues
    max_length: int = 96  # longest; lengths are uniform in [min_length, max_length]
    signal_dim: int = 8  # dims of the per-class vectors / lifted position (per label block in topology)
    heldout_fraction: float = 0.1  # share of nodes held out; their edges go to graph_heldout.tsv


@dataclass
class CliquesConfig(SequenceConfig):
    topics: int = 20  # cliques, one per topic
    clique_size: int = 50  # nodes per clique (degree clique_size - 1 before rewiring)
    noise: float = 0.1  # p: share of intra-clique edges rewired to a random node of another clique
    jitter: float = 0.0  # expected norm of per-node Gaussian noise on the unit topic vector


@dataclass
class ManifoldConfig(SequenceConfig):
    shape: str = "plane"  # plane | sphere | torus | mobius
    nodes: int = 1500  # points sampled area-uniformly on the surface
    mean_degree: float = 10.0  # expected mean degree; the geodesic radius is solved from it exactly
    regions: int = 10  # Voronoi cells around seeded centres: the `region` label
    lift: str = "fourier"  # how the 2-4 dim position embedding reaches W: none | linear | fourier
    lift_scale: float = 0.5  # fourier kernel width, in units of the unit-RMS position embedding


@dataclass
class TopologyConfig(SequenceConfig):
    cycle_length: int = 60  # nodes on the cycle; at least the number of motifs (one per cycle node)
    houses: int = 10  # 5-node houses, attached by a base node
    triangles: int = 10  # triangles, attached by one corner
    stars: int = 10  # stars, attached by the centre
    star_leaves: int = 4  # leaves per star


# ---------------------------------------------------------------------------------------------------
# The dataset in memory
# ---------------------------------------------------------------------------------------------------


@dataclass
class SyntheticDataset:
    """One generated dataset: what `write_dataset` writes, plus arrays kept for checks and plots."""

    name: str  # generator name
    config: SequenceConfig  # the resolved generator config
    graph: Graph  # the full graph over ids n00000, ...
    sequences: list[str]  # [N], letters of ALPHABET
    labels: dict[str, list[str]]  # label column -> [N] class names
    signal: np.ndarray  # [N, r] normalised latent signal the sequences were drawn from
    details: dict[str, Any] = field(default_factory=dict)  # generator facts for dataset.json (radius, ...)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # per-node extras, not written (positions)


# ---------------------------------------------------------------------------------------------------
# Sequence model
# ---------------------------------------------------------------------------------------------------


def normalise_signal(signal: np.ndarray) -> np.ndarray:
    """[N, r] -> [N, r] centred over nodes and scaled to unit RMS norm (zeros stay zeros)."""
    centred = signal - signal.mean(axis=0)
    rms = math.sqrt(float((centred**2).sum(axis=1).mean()))
    return centred / rms if rms > 0 else centred


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _draw(cumulative: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws: cumulative [N, 20], uniforms [N] -> letter indices [N]."""
    return np.minimum((cumulative < uniforms[:, None]).sum(axis=1), len(ALPHABET) - 1)


def transition_matrices(
    signal: np.ndarray, strength: float, background_scale: float, seed: int
) -> np.ndarray:
    """Per-node Markov transition matrices [N, 20, 20] (rows sum to 1) for signal [N, r]."""
    rng = _rng(seed, _GRAMMAR)
    size = len(ALPHABET)
    background = rng.normal(0.0, background_scale, (size, size))  # [20, 20]
    weights = rng.normal(size=(signal.shape[1], size, size))  # [r, 20, 20]
    logits = background + strength * np.einsum("nk,kab->nab", signal, weights)  # [N, 20, 20]
    return _softmax(logits)


def sample_sequences(
    signal: np.ndarray,
    *,
    strength: float,
    background_scale: float,
    min_length: int,
    max_length: int,
    seed: int,
) -> list[str]:
    """Draw one sequence per row of signal [N, r] from the Markov chain T(s) (module docstring)."""
    n = len(signal)
    probs = transition_matrices(signal, strength, background_scale, seed)  # [N, 20, 20]
    power = probs
    for _ in range(_STATIONARY_SQUARINGS):
        power = power @ power
    stationary = power.mean(axis=1)  # [N, 20]: every row of P^256 is the stationary distribution
    cumulative = np.cumsum(probs, axis=-1)  # [N, 20, 20]
    rng = _rng(seed, _SEQUENCES)
    lengths = rng.integers(min_length, max_length + 1, size=n)  # [N]
    uniforms = rng.random((n, max_length))  # [N, L]
    tokens = np.empty((n, max_length), dtype=np.intp)
    tokens[:, 0] = _draw(np.cumsum(stationary, axis=-1), uniforms[:, 0])
    rows = np.arange(n)
    for t in range(1, max_length):  # vectorised over nodes, one position at a time
        tokens[:, t] = _draw(cumulative[rows, tokens[:, t - 1]], uniforms[:, t])
    letters = np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)[tokens]  # [N, L] bytes
    return [letters[i, : lengths[i]].tobytes().decode("ascii") for i in range(n)]


def _class_vectors(names: list[str], dim: int, seed: int, label: str) -> dict[str, np.ndarray]:
    """A fixed random unit vector [dim] per class, drawn from (seed, label, name): a class keeps its
    vector whatever other classes the dataset has."""
    vectors = {}
    for name in names:
        key = zlib.crc32(f"{label}:{name}".encode())
        vector = _rng(seed, _CLASSES, key).normal(size=dim)
        vectors[name] = vector / np.linalg.norm(vector)
    return vectors


def _class_names(prefix: str, count: int) -> list[str]:
    width = len(str(count - 1))
    return [f"{prefix}{k:0{width}d}" for k in range(count)]


def node_ids(n: int) -> list[str]:
    """n00000, n00001, ...: zero-padded to the width of n - 1, at least 5 digits."""
    width = max(5, len(str(n - 1)))
    return [f"n{i:0{width}d}" for i in range(n)]


def _check_common(name: str, config: SequenceConfig) -> None:
    checks = [
        (config.seed >= 0, f"seed must be >= 0, got {config.seed}"),
        (config.signal >= 0, f"signal must be >= 0, got {config.signal}"),
        (config.background_scale >= 0, f"background_scale must be >= 0, got {config.background_scale}"),
        (config.min_length >= 1, f"min_length must be >= 1, got {config.min_length}"),
        (
            config.max_length >= config.min_length,
            f"max_length={config.max_length} must be >= min_length={config.min_length}",
        ),
        (config.signal_dim >= 1, f"signal_dim must be >= 1, got {config.signal_dim}"),
        (
            0 < config.heldout_fraction < 1,
            f"heldout_fraction must be in (0, 1), got {config.heldout_fraction}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"{name}: {message}")


def _assemble(
    name: str,
    config: SequenceConfig,
    edges: np.ndarray,
    labels: dict[str, np.ndarray],
    signal: np.ndarray,
    details: dict[str, Any],
    arrays: dict[str, np.ndarray] | None = None,
) -> SyntheticDataset:
    """Shuffle the node order, draw the sequences and build the dataset. edges [E, 2] in generation
    order; labels column -> [N] names; signal [N, r] raw (normalised here)."""
    n = len(signal)
    order = _rng(config.seed, _ORDER).permutation(n)  # new position p holds old node order[p]
    new_index = np.empty(n, dtype=np.int64)
    new_index[order] = np.arange(n)
    renamed = np.sort(new_index[edges], axis=1)  # [E, 2], a < b
    renamed = renamed[np.lexsort((renamed[:, 1], renamed[:, 0]))]
    signal = normalise_signal(signal[order])
    sequences = sample_sequences(
        signal,
        strength=config.signal,
        background_scale=config.background_scale,
        min_length=config.min_length,
        max_length=config.max_length,
        seed=config.seed,
    )
    graph = Graph(
        nodes=tuple(node_ids(n)),
        edges=renamed.astype(np.int64),
        weights=np.ones(len(renamed), dtype=np.float32),
    )
    return SyntheticDataset(
        name=name,
        config=config,
        graph=graph,
        sequences=sequences,
        labels={column: [str(v) for v in values[order]] for column, values in labels.items()},
        signal=signal,
        details=details,
        arrays={key: value[order] for key, value in (arrays or {}).items()},
    )


# ---------------------------------------------------------------------------------------------------
# cliques
# ---------------------------------------------------------------------------------------------------


def generate_cliques(config: CliquesConfig) -> SyntheticDataset:
    """Disjoint topic cliques with a share `noise` of edges rewired across topics; label `topic`."""
    _check_common("cliques", config)
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

    rng = _rng(config.seed, _GRAPH)
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

    names = _class_names("t", config.topics)
    vectors = _class_vectors(names, config.signal_dim, config.seed, "topic")
    signal = np.stack([vectors[names[t]] for t in topic])  # [N, r]
    if config.jitter > 0:
        noise = _rng(config.seed, _JITTER).normal(size=signal.shape)
        signal = signal + config.jitter * noise / math.sqrt(config.signal_dim)
    labels = {"topic": np.asarray(names)[topic]}
    details = {"rewired_edges": len(rewired)}
    return _assemble("cliques", config, edges, labels, signal, details)


# ---------------------------------------------------------------------------------------------------
# manifold
# ---------------------------------------------------------------------------------------------------

_AREA = {"plane": 1.0, "sphere": 4 * math.pi, "torus": 4 * math.pi**2, "mobius": 2 * math.pi * MOBIUS_WIDTH}
# Largest radius for which `edge_probability` is exact (no disc meets itself or both strip edges).
_MAX_RADIUS = {"plane": 1.0, "sphere": math.pi, "torus": math.pi, "mobius": MOBIUS_WIDTH / 2}


def _check_shape(shape: str) -> None:
    if shape not in SHAPES:
        raise ValueError(f"manifold: unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")


def edge_probability(shape: str, radius: float) -> float:
    """P(geodesic distance <= radius) for two independent area-uniform points on `shape`.

    The mean area of a disc clipped to the surface over the surface's area: the disc loses (2/3) r^3 per
    unit length of boundary (plus r^4/2 at the square's corners), so the plane is the distribution of the
    distance in the unit square and the Möbius strip (boundary length 4pi) loses (4/3) r^3 / width.
    """
    _check_shape(shape)
    if not 0 <= radius <= _MAX_RADIUS[shape]:
        raise ValueError(f"radius {radius} outside [0, {_MAX_RADIUS[shape]:.4g}] for {shape}")
    r = radius
    area = {
        "plane": math.pi * r**2 - 8 / 3 * r**3 + r**4 / 2,
        "sphere": 2 * math.pi * (1 - math.cos(r)),
        "torus": math.pi * r**2,
        "mobius": math.pi * r**2 - 4 / 3 * r**3 / MOBIUS_WIDTH,
    }[shape]
    return area / _AREA[shape]


def radius_for_degree(shape: str, nodes: int, mean_degree: float) -> float:
    """The geodesic radius at which `nodes` uniform points have expected mean degree `mean_degree`."""
    most = (nodes - 1) * edge_probability(shape, _MAX_RADIUS[shape])
    if not 0 < mean_degree <= most:
        raise ValueError(
            f"manifold: mean_degree must be in (0, {most:.1f}] for {nodes} nodes on the {shape}, "
            f"got {mean_degree}"
        )
    low, high = 0.0, _MAX_RADIUS[shape]
    for _ in range(100):  # bisection: the expected degree grows with the radius
        middle = (low + high) / 2
        if (nodes - 1) * edge_probability(shape, middle) < mean_degree:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def sample_points(shape: str, count: int, rng: np.random.Generator) -> np.ndarray:
    """Area-uniform points in `shape`'s coordinates: plane (x, y); sphere (x, y, z) unit vectors;
    torus (a, b) angles; Möbius (theta, w) with w in [-1, 1]. -> [count, 2 or 3]"""
    _check_shape(shape)
    if shape == "plane":
        return rng.random((count, 2))
    if shape == "sphere":
        points = rng.normal(size=(count, 3))
        return points / np.linalg.norm(points, axis=1, keepdims=True)
    if shape == "torus":
        return rng.random((count, 2)) * 2 * math.pi
    theta = rng.random(count) * 2 * math.pi
    return np.stack([theta, rng.uniform(-1.0, 1.0, count)], axis=1)


def geodesic_distance(shape: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Geodesic distances between points in `shape`'s coordinates: a [..., d], b [..., d] broadcast -> [...]."""
    _check_shape(shape)
    if shape == "plane":
        return np.linalg.norm(a - b, axis=-1)
    if shape == "sphere":
        # 2 asin(chord / 2) keeps precision at short range, where arccos of a dot product loses it
        return 2 * np.arcsin(np.clip(np.linalg.norm(a - b, axis=-1) / 2, 0.0, 1.0))
    if shape == "torus":
        gap = np.abs(a - b) % (2 * math.pi)
        return np.linalg.norm(np.minimum(gap, 2 * math.pi - gap), axis=-1)
    along = np.abs(a[..., 0] - b[..., 0]) % (2 * math.pi)
    half = MOBIUS_WIDTH / 2  # w in [-1, 1] -> across-strip coordinate w * half
    direct = np.hypot(along, half * (a[..., 1] - b[..., 1]))
    twisted = np.hypot(2 * math.pi - along, half * (a[..., 1] + b[..., 1]))  # via (theta + 2pi, -w)
    return np.minimum(direct, twisted)


def pairs_within(shape: str, points: np.ndarray, radius: float, chunk: int = 512) -> np.ndarray:
    """All pairs i < j with geodesic distance <= radius -> [E, 2], sorted; memory O(chunk * N)."""
    found = []
    for start in range(0, len(points), chunk):
        block = geodesic_distance(shape, points[start : start + chunk, None, :], points[None, :, :])  # [c, N]
        i, j = np.nonzero(block <= radius)
        i = i + start
        keep = j > i
        found.append(np.stack([i[keep], j[keep]], axis=1))
    return np.concatenate(found).astype(np.int64)


def voronoi_centres(shape: str, points: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Indices [count] of distinct nodes whose Voronoi cells are roughly equal: k-means++ seeding (the
    first uniformly, each next with probability proportional to its squared geodesic distance from the
    centres so far), then k-medoids steps (each centre moves to the member of its cell with the least
    summed squared distance to the cell). Random centres alone leave slivers between near-coincident
    centres and cells 5x larger than others."""
    chosen = _kmeans_plus_plus(shape, points, count, rng)
    for _ in range(_MEDOID_STEPS):
        cell = geodesic_distance(shape, points[:, None, :], points[chosen][None, :, :]).argmin(axis=1)  # [N]
        moved = chosen.copy()
        for k in range(count):
            members = np.flatnonzero(cell == k)  # never empty: the centre itself is a member
            spread = geodesic_distance(shape, points[members][:, None, :], points[members][None, :, :])
            moved[k] = members[(spread**2).sum(axis=1).argmin()]
        if len(set(moved.tolist())) < count or np.array_equal(moved, chosen):
            break
        chosen = moved
    return chosen


def _kmeans_plus_plus(shape: str, points: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    chosen = [int(rng.integers(len(points)))]
    nearest = geodesic_distance(shape, points, points[chosen[0]]) ** 2  # [N]
    for _ in range(count - 1):
        total = nearest.sum()
        if total == 0:  # fewer distinct positions than centres: take any unchosen node
            pick = int(rng.choice(np.setdiff1d(np.arange(len(points)), chosen)))
        else:
            pick = int(rng.choice(len(points), p=nearest / total))
        chosen.append(pick)
        nearest = np.minimum(nearest, geodesic_distance(shape, points, points[pick]) ** 2)
    return np.asarray(chosen)


def embed_points(shape: str, points: np.ndarray) -> np.ndarray:
    """A continuous embedding of the positions: [N, d] coordinates -> [N, 2..4]."""
    _check_shape(shape)
    if shape in ("plane", "sphere"):
        return points.copy()
    if shape == "torus":
        a, b = points[:, 0], points[:, 1]
        return np.stack([np.cos(a), np.sin(a), np.cos(b), np.sin(b)], axis=1)
    theta, w = points[:, 0], points[:, 1]
    ring = 1 + w / 2 * np.cos(theta / 2)
    return np.stack([ring * np.cos(theta), ring * np.sin(theta), w / 2 * np.sin(theta / 2)], axis=1)


def lift_signal(embedding: np.ndarray, lift: str, dim: int, scale: float, seed: int) -> np.ndarray:
    """[N, e] unit-RMS position embedding -> [N, dim] (or [N, e] for lift none); see the module docstring."""
    if lift == "none":
        return embedding
    rng = _rng(seed, _LIFT)
    projection = rng.normal(size=(embedding.shape[1], dim))  # [e, dim]
    if lift == "linear":
        return embedding @ projection
    if lift == "fourier":
        phases = rng.uniform(0, 2 * math.pi, dim)  # [dim]
        return np.cos(embedding @ projection / scale + phases)
    raise ValueError(f"manifold: unknown lift {lift!r}; expected one of {', '.join(LIFTS)}")


def generate_manifold(config: ManifoldConfig) -> SyntheticDataset:
    """Random geometric graph on a surface; label `region` (Voronoi cell of seeded centres)."""
    _check_common("manifold", config)
    _check_shape(config.shape)
    if config.lift not in LIFTS:
        raise ValueError(f"manifold: unknown lift {config.lift!r}; expected one of {', '.join(LIFTS)}")
    if config.lift_scale <= 0:
        raise ValueError(f"manifold: lift_scale must be > 0, got {config.lift_scale}")
    if config.nodes < 2:
        raise ValueError(f"manifold: nodes must be >= 2, got {config.nodes}")
    if not 1 <= config.regions <= config.nodes:
        raise ValueError(f"manifold: regions must be in [1, nodes={config.nodes}], got {config.regions}")
    radius = radius_for_degree(config.shape, config.nodes, config.mean_degree)

    rng = _rng(config.seed, _GRAPH)
    points = sample_points(config.shape, config.nodes, rng)  # [N, d]
    edges = pairs_within(config.shape, points, radius)
    centres = points[voronoi_centres(config.shape, points, config.regions, rng)]  # [R, d]
    region = geodesic_distance(config.shape, points[:, None, :], centres[None, :, :]).argmin(axis=1)  # [N]

    embedding = normalise_signal(embed_points(config.shape, points))
    signal = lift_signal(embedding, config.lift, config.signal_dim, config.lift_scale, config.seed)
    labels = {"region": np.asarray(_class_names("r", config.regions))[region]}
    details = {
        "radius": radius,
        "area": _AREA[config.shape],
        "expected_mean_degree": (config.nodes - 1) * edge_probability(config.shape, radius),
        "centres": centres.round(6).tolist(),
        "coordinates": {
            "plane": "(x, y) in the unit square",
            "sphere": "(x, y, z) on the unit sphere",
            "torus": "(a, b) angles in [0, 2pi)",
            "mobius": f"(theta in [0, 2pi), w in [-1, 1]); strip width {MOBIUS_WIDTH:g}, half twist",
        }[config.shape],
    }
    arrays = {"positions": points, "region_index": region}
    return _assemble("manifold", config, edges, labels, signal, details, arrays)


# ---------------------------------------------------------------------------------------------------
# topology
# ---------------------------------------------------------------------------------------------------


def _canonical_form(adjacency: np.ndarray) -> str:
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
        forms.append(_canonical_form(sub))
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
    _check_common("topology", config)
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
    hosts = _rng(config.seed, _GRAPH).choice(cycle, size=total, replace=False).tolist()
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
        vectors = _class_vectors(sorted(set(values.tolist())), config.signal_dim, config.seed, column)
        blocks.append(np.stack([vectors[v] for v in values.tolist()]) / math.sqrt(len(labels)))
    signal = np.concatenate(blocks, axis=1)  # [N, 3 * signal_dim]
    details = {"motif_counts": counts, "hosts": len(hosts)}
    return _assemble("topology", config, edge_array, labels, signal, details)


# ---------------------------------------------------------------------------------------------------
# Registry and output
# ---------------------------------------------------------------------------------------------------

GENERATORS: dict[str, tuple[type[SequenceConfig], Callable[[Any], SyntheticDataset]]] = {
    "cliques": (CliquesConfig, generate_cliques),
    "manifold": (ManifoldConfig, generate_manifold),
    "topology": (TopologyConfig, generate_topology),
}


def generator(name: str) -> tuple[type[SequenceConfig], Callable[[Any], SyntheticDataset]]:
    """(config class, generate function) of a generator, by name."""
    if name not in GENERATORS:
        raise ValueError(f"unknown synthetic dataset {name!r}; expected one of {', '.join(GENERATORS)}")
    return GENERATORS[name]


def generate(name: str, config: SequenceConfig | None = None) -> SyntheticDataset:
    """Generate dataset `name` from `config` (its defaults when None)."""
    config_class, function = generator(name)
    if config is None:
        config = config_class()
    if not isinstance(config, config_class):
        raise TypeError(f"{name} needs a {config_class.__name__}, got {type(config).__name__}")
    return function(config)


def _degree_stats(graph: Graph) -> dict[str, float]:
    degrees = graph.degrees()
    return {
        "min": int(degrees.min()),
        "median": float(np.median(degrees)),
        "mean": round(float(degrees.mean()), 4),
        "max": int(degrees.max()),
    }


def _card(dataset: SyntheticDataset, summary: dict[str, Any]) -> str:
    """README.md: what the generator does, its parameters and the counts."""
    doc = (GENERATORS[dataset.name][1].__doc__ or "").strip()
    counts, degree = summary["counts"], summary["degree"]
    lines = [
        f"# Synthetic `{dataset.name}` dataset",
        "",
        f"{doc} Written by `seqstruct synth {dataset.name}` ({GENERATOR_VERSION}); the generators are "
        "documented in `seqstruct.data.synthetic`.",
        "",
        "Each node carries a sequence over the 20 amino-acid letters drawn from a first-order Markov chain "
        "whose transition logits are a shared background grammar plus `signal` times a node-specific "
        "perturbation driven by the node's labels, so the labels are in the sequences but only weakly.",
        "",
        "## Files",
        "",
        "- `sequences.fasta`: one record per node (ids `n00000`, ...)",
        "- `graph.tsv`: training edges (neither end held out)",
        "- `graph_heldout.tsv`: edges with at least one held-out end",
        "- `heldout_nodes.txt`: the held-out nodes, one id a line (also in `dataset.json`, `heldout.ids`)",
        f"- `labels.tsv`: `id` and {', '.join(f'`{c}`' for c in dataset.labels)}",
        "- `dataset.json`: config, counts, degrees, class counts",
        "",
        "## Counts",
        "",
        f"- nodes: {counts['nodes']}; edges: {counts['edges']} ({counts['training_edges']} training, "
        f"{counts['heldout_edges']} touching the {counts['heldout_nodes']} held-out nodes)",
        f"- degree: min {degree['min']}, median {degree['median']:g}, mean {degree['mean']:.2f}, "
        f"max {degree['max']}",
        f"- sequence length: {summary['lengths']['min']} to {summary['lengths']['max']} "
        f"(mean {summary['lengths']['mean']:.1f})",
    ]
    for column, classes in summary["labels"].items():
        lines.append(
            f"- `{column}`: {len(classes)} classes, " + ", ".join(f"{k} {v}" for k, v in classes.items())
        )
    lines += ["", "## Parameters", "", "| parameter | value |", "|---|---|"]
    lines += [f"| `{key}` | {value} |" for key, value in dataclasses.asdict(dataset.config).items()]
    return "\n".join(lines) + "\n"


def write_dataset(
    dataset: SyntheticDataset, output_dir: str | Path, *, overwrite: bool = False
) -> dict[str, Any]:
    """Write the dataset's files (module docstring) into `output_dir`; return the summary that
    dataset.json holds. A non-empty directory is refused unless `overwrite`."""
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out} is not empty; choose an empty directory or overwrite (synth --overwrite)"
        )
    config, graph = dataset.config, dataset.graph
    training, heldout, held = split_heldout_nodes(graph, config.heldout_fraction, config.seed)
    if len(heldout.edges) == 0:
        logger.warning("%s: the %d held-out nodes have no edges; graph_heldout.tsv is empty", out, len(held))
    ids = graph.nodes
    lengths = np.array([len(s) for s in dataset.sequences])
    summary: dict[str, Any] = {
        "name": dataset.name,
        "generator_version": GENERATOR_VERSION,
        "config": dataclasses.asdict(config),
        "counts": {
            "nodes": len(ids),
            "edges": len(graph.edges),
            "training_edges": len(training.edges),
            "heldout_nodes": len(held),
            "heldout_edges": len(heldout.edges),
        },
        "degree": _degree_stats(graph),
        "lengths": {"min": int(lengths.min()), "mean": float(lengths.mean()), "max": int(lengths.max())},
        "labels": {
            column: dict(sorted(Counter(values).items())) for column, values in dataset.labels.items()
        },
        "details": dataset.details,
        "heldout": {"fraction": config.heldout_fraction, "ids": [ids[i] for i in held.tolist()]},
    }
    out.mkdir(parents=True, exist_ok=True)
    write_fasta(
        (FastaRecord(node, "", sequence) for node, sequence in zip(ids, dataset.sequences, strict=True)),
        out / "sequences.fasta",
    )
    write_edge_list(training, out / "graph.tsv")
    write_edge_list(heldout, out / "graph_heldout.tsv")
    columns = list(dataset.labels)
    with atomic_open(out / "labels.tsv") as handle:
        handle.write("\t".join(["id", *columns]) + "\n")
        for i, node in enumerate(ids):
            handle.write("\t".join([node, *(dataset.labels[c][i] for c in columns)]) + "\n")
    with atomic_open(out / "heldout_nodes.txt") as handle:
        # Named, not left to be inferred from graph_heldout.tsv: a kept node whose every edge leads to a
        # held-out one would look held out too.
        handle.writelines(ids[i] + "\n" for i in held.tolist())
    with atomic_open(out / "dataset.json") as handle:
        json.dump(summary, handle, indent=2)
        handle.write("\n")
    with atomic_open(out / "README.md") as handle:
        handle.write(_card(dataset, summary))
    logger.info("wrote %s dataset to %s: %s", dataset.name, out, summary["counts"])
    return summary
