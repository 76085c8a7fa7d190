"""The `manifold` generator: a random geometric graph on a plane, sphere, torus or Möbius strip.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from seqstruct.data.synthetic.sequences import (
    GRAPH_STREAM,
    LIFT_STREAM,
    SequenceConfig,
    SyntheticDataset,
    assemble,
    check_common,
    class_names,
    normalise_signal,
    rng_for,
)

SHAPES = ("plane", "sphere", "torus", "mobius")
LIFTS = ("none", "linear", "fourier")
MOBIUS_WIDTH = 1.0  # strip width in the units of theta (length 2pi), as in the standard 3-D embedding
_MEDOID_STEPS = 10  # k-medoids steps after k-means++ seeding of the region centres


@dataclass
class ManifoldConfig(SequenceConfig):
    shape: str = "plane"  # plane | sphere | torus | mobius
    nodes: int = 1500  # points sampled area-uniformly on the surface
    mean_degree: float = 10.0  # expected mean degree; the geodesic radius is solved from it exactly
    regions: int = 10  # Voronoi cells around seeded centres: the `region` label
    lift: str = "fourier"  # how the 2-4 dim position embedding reaches W: none | linear | fourier
    lift_scale: float = 0.5  # fourier kernel width, in units of the unit-RMS position embedding


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
    rng = rng_for(seed, LIFT_STREAM)
    projection = rng.normal(size=(embedding.shape[1], dim))  # [e, dim]
    if lift == "linear":
        return embedding @ projection
    if lift == "fourier":
        phases = rng.uniform(0, 2 * math.pi, dim)  # [dim]
        return np.cos(embedding @ projection / scale + phases)
    raise ValueError(f"manifold: unknown lift {lift!r}; expected one of {', '.join(LIFTS)}")


def generate_manifold(config: ManifoldConfig) -> SyntheticDataset:
    """Random geometric graph on a surface; label `region` (Voronoi cell of seeded centres)."""
    check_common("manifold", config)
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

    rng = rng_for(config.seed, GRAPH_STREAM)
    points = sample_points(config.shape, config.nodes, rng)  # [N, d]
    edges = pairs_within(config.shape, points, radius)
    centres = points[voronoi_centres(config.shape, points, config.regions, rng)]  # [R, d]
    region = geodesic_distance(config.shape, points[:, None, :], centres[None, :, :]).argmin(axis=1)  # [N]

    embedding = normalise_signal(embed_points(config.shape, points))
    signal = lift_signal(embedding, config.lift, config.signal_dim, config.lift_scale, config.seed)
    labels = {"region": np.asarray(class_names("r", config.regions))[region]}
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
    return assemble("manifold", config, edges, labels, signal, details, arrays)
