from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from seqstruct.cli import main
from seqstruct.data.fasta import read_fasta
from seqstruct.data.graph import Graph, read_edge_list
from seqstruct.data.prepared import load_prepared, prepare, recipe_options, recipes
from seqstruct.data.synthetic import (
    ALPHABET,
    HELDOUT,
    SHAPES,
    CliquesConfig,
    ManifoldConfig,
    TopologyConfig,
    canonical_form,
    ego_classes,
    generate,
    generate_cliques,
    generate_manifold,
    generate_topology,
    geodesic_distance,
    node_ids,
    write_synthetic,
)

FILES = (
    "sequences.fasta",
    "train.fasta",
    "graph.tsv",
    "graph_heldout.tsv",
    "heldout_nodes.txt",
    "splits",
    "dataset.json",
    "README.md",
)
SMALL = {
    "cliques": CliquesConfig(topics=4, clique_size=8, noise=0.2, heldout_fraction=0.2),
    "manifold": ManifoldConfig(nodes=150, regions=5, shape="torus", heldout_fraction=0.2),
    "topology": TopologyConfig(cycle_length=12, houses=2, triangles=2, stars=2, heldout_fraction=0.2),
}
LABELS = {"cliques": ["topic"], "manifold": ["region"], "topology": ["motif", "role", "ego"]}


def _edge_set(graph: Graph) -> set[tuple[str, str]]:
    return {tuple(sorted((graph.nodes[a], graph.nodes[b]))) for a, b in graph.edges.tolist()}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_written_dataset_reads_back_whole(tmp_path: Path, name: str) -> None:
    dataset = generate(name, SMALL[name])
    prepared = write_synthetic(name, SMALL[name], tmp_path / "out")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)

    records = read_fasta(out / "sequences.fasta")
    ids = [r.id for r in records]
    assert ids == list(dataset.graph.nodes) == node_ids(len(ids)) and ids[0] == "n00000"
    config = dataset.config
    for record in records:
        assert set(record.sequence) <= set(ALPHABET)
        assert config.min_length <= len(record.sequence) <= config.max_length

    training, _ = read_edge_list(out / "graph.tsv", ids)
    heldout, _ = read_edge_list(out / "graph_heldout.tsv", ids)
    info = prepared.info
    held = set(prepared.split(HELDOUT)["id"])
    assert (out / "heldout_nodes.txt").read_text().split() == list(prepared.split(HELDOUT)["id"])
    assert len(held) == info.counts["heldout_nodes"] == round(0.2 * len(ids))
    assert set(prepared.split("train")["id"]) == set(ids) - held
    assert [r.id for r in read_fasta(out / "train.fasta")] == list(prepared.split("train")["id"])
    train_edges, heldout_edges = _edge_set(training), _edge_set(heldout)
    assert not train_edges & heldout_edges
    assert train_edges | heldout_edges == _edge_set(dataset.graph)
    assert all(not held & set(edge) for edge in train_edges)
    assert all(held & set(edge) for edge in heldout_edges)

    assert list(info.columns) == LABELS[name]
    for split in prepared.splits.values():
        assert split.column_names == ["id", "text", *LABELS[name]]
        assert all(all(split[column]) for column in LABELS[name])  # every node labelled
        for node, text, *labels in zip(*(split[c] for c in split.column_names), strict=True):
            assert labels == [dataset.labels[c][ids.index(node)] for c in LABELS[name]]
            assert text == records[ids.index(node)].sequence

    meta = json.loads((out / "dataset.json").read_text())
    assert meta["name"] == meta["recipe"] == name and "seqstruct.synthetic/" in meta["source"]
    assert meta["counts"]["nodes"] == len(ids)
    assert meta["counts"]["edges"] == len(train_edges) + len(heldout_edges)
    assert meta["counts"]["heldout_edges"] == len(heldout_edges) == meta["graph"]["heldout_edges"]
    assert meta["graph"]["all"]["degree_max"] == int(dataset.graph.degrees().max())
    assert meta["config"]["seed"] == 0 and meta["kind"] == "protein"
    card = (out / "README.md").read_text()
    assert "### Parameters" in card and f"`{LABELS[name][0]}`:" in card


def test_same_seed_same_bytes_other_seed_other_files(tmp_path: Path) -> None:
    config = SMALL["topology"]
    for folder in ("a", "b"):
        write_synthetic("topology", config, tmp_path / folder)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) > len(FILES)  # the Arrow splits too
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    other = TopologyConfig(**{**vars(config), "seed": 1})
    write_synthetic("topology", other, tmp_path / "c")
    for name in ("sequences.fasta", "graph.tsv", "heldout_nodes.txt"):
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes(), name


def _topic_pairs(dataset) -> np.ndarray:
    topic = np.asarray(dataset.labels["topic"])
    return topic[dataset.graph.edges]  # [E, 2]


def test_cliques_without_noise_are_complete_and_disjoint() -> None:
    dataset = generate_cliques(CliquesConfig(topics=5, clique_size=7, noise=0.0))
    pairs = _topic_pairs(dataset)
    assert (pairs[:, 0] == pairs[:, 1]).all()
    assert len(dataset.graph.edges) == 5 * math.comb(7, 2)
    assert (dataset.graph.degrees() == 6).all()  # complete: every node sees its 6 clique mates


def test_cliques_rewire_share_noise_keeping_the_edge_count() -> None:
    dataset = generate_cliques(CliquesConfig(topics=10, clique_size=20, noise=0.3))
    pairs = _topic_pairs(dataset)
    assert len(dataset.graph.edges) == 10 * math.comb(20, 2)
    assert len(_edge_set(dataset.graph)) == len(dataset.graph.edges)  # no repeats, no self-loops
    assert (dataset.graph.edges[:, 0] != dataset.graph.edges[:, 1]).all()
    share = float((pairs[:, 0] != pairs[:, 1]).mean())
    assert abs(share - 0.3) < 0.05  # 1,900 edges: sd of the share is 0.011
    assert share * len(pairs) == dataset.details["rewired_edges"]


@pytest.mark.parametrize("shape", SHAPES)
def test_manifold_edges_are_exactly_the_pairs_within_radius(shape: str) -> None:
    dataset = generate_manifold(ManifoldConfig(shape=shape, nodes=200, regions=6))
    positions, radius = dataset.arrays["positions"], dataset.details["radius"]
    distances = geodesic_distance(shape, positions[:, None, :], positions[None, :, :])  # [N, N]
    assert np.allclose(distances, distances.T) and np.allclose(np.diag(distances), 0)
    i, j = np.triu_indices(len(positions), k=1)
    within = np.stack([i, j], axis=1)[distances[i, j] <= radius]
    assert np.array_equal(dataset.graph.edges, within)
    centres = np.asarray(dataset.details["centres"])
    nearest = geodesic_distance(shape, positions[:, None, :], centres[None, :, :]).argmin(axis=1)
    assert [f"r{k}" for k in nearest] == dataset.labels["region"]


@pytest.mark.parametrize("shape", SHAPES)
def test_manifold_mean_degree_close_to_target(shape: str) -> None:
    dataset = generate_manifold(
        ManifoldConfig(shape=shape, nodes=800, mean_degree=10.0, min_length=4, max_length=4)
    )
    assert abs(dataset.graph.degrees().mean() - 10.0) < 1.0  # boundary losses are in the radius


def test_geodesic_distance_wraps_around_torus_and_twists_the_mobius_strip() -> None:
    two_pi = 2 * math.pi
    assert geodesic_distance("torus", np.array([0.05, 3.0]), np.array([two_pi - 0.05, 3.0])) == pytest.approx(
        0.1
    )
    # Crossing the Möbius seam flips w: (2pi - 0.05, -0.8) is next to (0.05, 0.8), (2pi - 0.05, 0.8) is not.
    near = geodesic_distance("mobius", np.array([0.05, 0.8]), np.array([two_pi - 0.05, -0.8]))
    far = geodesic_distance("mobius", np.array([0.05, 0.8]), np.array([two_pi - 0.05, 0.8]))
    assert near == pytest.approx(0.1) and far == pytest.approx(math.hypot(0.1, 0.8))
    assert geodesic_distance("sphere", np.array([1.0, 0, 0]), np.array([-1.0, 0, 0])) == pytest.approx(
        math.pi
    )


@pytest.mark.parametrize("shape", ["torus", "mobius"])
def test_manifold_links_pairs_across_the_seam(shape: str) -> None:
    dataset = generate_manifold(ManifoldConfig(shape=shape, nodes=300, min_length=4, max_length=4))
    positions, radius = dataset.arrays["positions"], dataset.details["radius"]
    a, b = positions[dataset.graph.edges[:, 0]], positions[dataset.graph.edges[:, 1]]
    across = np.abs(a[:, 0] - b[:, 0]) > math.pi  # linked although theta (or a) is far apart unwrapped
    assert across.sum() >= 3
    if shape == "mobius":  # and they were joined through the twist: w flipped sign
        assert (a[across, 1] * b[across, 1] < 0).any()
    assert (geodesic_distance(shape, a[across], b[across]) <= radius).all()


def test_topology_roles_and_ego_classes_by_hand() -> None:
    config = TopologyConfig(cycle_length=6, houses=1, triangles=1, stars=1, star_leaves=3)
    dataset = generate_topology(config)
    motif, role, ego = (np.asarray(dataset.labels[c]) for c in ("motif", "role", "ego"))
    assert {m: int((motif == m).sum()) for m in set(motif)} == {
        "cycle": 6,
        "house": 5,
        "triangle": 3,
        "star": 4,
    }
    expected = {
        "cycle": "d2:0,0",
        "cycle-attachment": "d3:0,0,0",
        "house-roof": "d2:1,1",
        "house-top": "d3:1,1,0",
        "triangle-attached": "d3:1,1,0",
        "triangle-free": "d2:1,1",
        "star-centre": "d4:0,0,0,0",  # three leaves and the cycle node, none linked
        "star-leaf": "d1:0",
    }
    for name, ego_class in expected.items():
        assert set(ego[role == name]) == {ego_class}, name
    # one house base is attached (three unlinked neighbours), the other sits like a cycle node
    assert sorted(ego[role == "house-base"]) == ["d2:0,0", "d3:0,0,0"]
    assert (role == "cycle-attachment").sum() == 3
    centre = int(np.flatnonzero(role == "star-centre")[0])
    assert sorted(role[dataset.graph.neighbours()[centre]]) == ["cycle-attachment"] + ["star-leaf"] * 3


def test_ego_classes_tell_apart_same_degree_sequences() -> None:
    # Two hubs whose 5 neighbours form a path (P5) and a triangle plus an edge: both 2,2,2,1,1.
    edges = [(0, k) for k in range(1, 6)] + [(1, 2), (2, 3), (3, 4), (4, 5)]
    edges += [(6, k) for k in range(7, 12)] + [(7, 8), (8, 9), (7, 9), (10, 11)]
    graph = Graph(tuple(map(str, range(12))), np.array(edges), np.ones(len(edges), np.float32))
    ego = ego_classes(graph)
    assert {ego[0], ego[6]} == {"d5:2,2,2,1,1#1", "d5:2,2,2,1,1#2"}
    assert ego[1] == "d2:1,1" and ego[10] == "d2:1,1"  # unambiguous names get no suffix


def test_canonical_form_ignores_node_order() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        adjacency = np.triu(rng.random((6, 6)) < 0.4, k=1)
        adjacency = adjacency | adjacency.T
        order = rng.permutation(6)
        assert canonical_form(adjacency) == canonical_form(adjacency[np.ix_(order, order)])
    path = np.zeros((4, 4), bool)
    star = np.zeros((4, 4), bool)
    for a, b in [(0, 1), (1, 2), (2, 3)]:
        path[a, b] = path[b, a] = True
    for b in (1, 2, 3):
        star[0, b] = star[b, 0] = True
    assert canonical_form(path) != canonical_form(star)


def _bigram_centroid_accuracy(sequences: list[str], labels: list[str]) -> float:
    """Nearest centroid of normalised bigram counts, centroids from even nodes, scored on odd ones."""
    index = {c: i for i, c in enumerate(ALPHABET)}
    counts = np.zeros((len(sequences), len(ALPHABET) ** 2))
    for row, sequence in enumerate(sequences):
        tokens = np.array([index[c] for c in sequence])
        np.add.at(counts[row], tokens[:-1] * len(ALPHABET) + tokens[1:], 1)
    features = counts / np.linalg.norm(counts, axis=1, keepdims=True)
    labels_array = np.asarray(labels)
    classes = sorted(set(labels))
    train, test = np.arange(0, len(labels), 2), np.arange(1, len(labels), 2)
    centroids = np.stack([features[train][labels_array[train] == c].mean(axis=0) for c in classes])
    predicted = np.asarray(classes)[(features[test] @ centroids.T).argmax(axis=1)]
    return float((predicted == labels_array[test]).mean())


def test_topic_is_in_the_sequences_only_when_there_is_signal() -> None:
    strong = generate_cliques(CliquesConfig(topics=4, clique_size=40, signal=1.5))
    none = generate_cliques(CliquesConfig(topics=4, clique_size=40, signal=0.0))
    assert _bigram_centroid_accuracy(strong.sequences, strong.labels["topic"]) > 0.85  # chance: 0.25
    assert _bigram_centroid_accuracy(none.sequences, none.labels["topic"]) < 0.45


@pytest.mark.parametrize(
    ("name", "config", "message"),
    [
        ("manifold", ManifoldConfig(shape="cube"), "unknown shape 'cube'"),
        ("manifold", ManifoldConfig(nodes=20, regions=21), "regions must be in"),
        ("manifold", ManifoldConfig(nodes=20, mean_degree=50), "mean_degree must be in"),
        ("manifold", ManifoldConfig(lift="cubic"), "unknown lift"),
        ("topology", TopologyConfig(cycle_length=10), "cycle_length=10 must be at least"),
        ("cliques", CliquesConfig(topics=1), "topics >= 2"),
        ("cliques", CliquesConfig(noise=1.5), "noise must be in"),
        ("cliques", CliquesConfig(min_length=50, max_length=40), "max_length=40 must be >= min_length=50"),
        ("cliques", CliquesConfig(heldout_fraction=1.0), "heldout_fraction"),
    ],
)
def test_bad_config_values_are_named(name: str, config, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate(name, config)


def test_unknown_generator_named() -> None:
    with pytest.raises(ValueError, match="unknown synthetic dataset 'grid'.*cliques, manifold, topology"):
        generate("grid")


def test_non_empty_directory_refused_unless_overwrite(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=str(tmp_path)):
        write_synthetic("topology", SMALL["topology"], tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    write_synthetic("topology", SMALL["topology"], tmp_path, overwrite=True)  # replaces the directory whole
    assert (tmp_path / "graph.tsv").exists() and not (tmp_path / "notes.txt").exists()


def test_generators_are_data_prepare_recipes(tmp_path: Path) -> None:
    assert {"cliques", "manifold", "topology"} <= set(recipes())
    options = recipe_options(recipes()["manifold"])
    assert options["shape"] == "plane" and options["nodes"] == 1500 and options["seed"] == 0
    options = {"topics": 3, "clique_size": 6, "min_length": 10, "max_length": 12}
    prepared = prepare("cliques", tmp_path / "recipe", **options)
    write_synthetic("cliques", CliquesConfig(**options), tmp_path / "direct")
    assert prepared.info.recipe == "cliques" and load_prepared(tmp_path / "direct").info == prepared.info
    for name in ("sequences.fasta", "graph.tsv", "heldout_nodes.txt"):
        assert (tmp_path / "recipe" / name).read_bytes() == (tmp_path / "direct" / name).read_bytes()
    with pytest.raises(ValueError, match="recipe 'cliques' has no option colour"):
        prepare("cliques", tmp_path / "bad", colour="red")


def test_cli_synth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "topo"
    args = ["synth", "topology", "cycle_length=8", "houses=1", "triangles=1", "stars=1", "seed=3"]
    assert main([*args, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote topology: 21 sequences" in printed and str(out) in printed
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["config"]["seed"] == 3 and meta["config"]["cycle_length"] == 8
    assert main([*args, "-o", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main([*args, "-o", str(out), "--overwrite"]) == 0
    assert main(["synth", "manifold", "colour=red", "-o", str(tmp_path / "m")]) == 2
    assert "unknown config key" in capsys.readouterr().err


def test_every_generator_has_labels_on_every_node() -> None:
    for name, columns in LABELS.items():
        dataset = generate(name, SMALL[name])
        n = len(dataset.graph.nodes)
        assert list(dataset.labels) == columns
        assert all(len(values) == n and all(values) for values in dataset.labels.values())
        assert dataset.signal.shape[0] == n
        assert np.sqrt((dataset.signal**2).sum(axis=1).mean()) == pytest.approx(1.0)
        assert {n for edge in _edge_set(dataset.graph) for n in edge} <= set(dataset.graph.nodes)
