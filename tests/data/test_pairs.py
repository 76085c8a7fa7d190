"""Contrastive pairs (seqstruct.data.pairs) on the tiny real fixtures: 210 GO terms, WordNet lines, and 120
Swiss-Prot proteins with a hand-made graph; expectations are recomputed here from the splits and the edge
files, not from the module's own helpers."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from seqstruct.data.fasta import write_fasta
from seqstruct.data.graph import Graph
from seqstruct.data.pairs import (
    PairSet,
    Siblings,
    build_pairs,
    heldout_pairs,
    resolve_kind,
    trainer_dataset,
)
from seqstruct.data.prepared import Prepared, prepare
from seqstruct.data.sources.go_text import prepare_go_text
from seqstruct.data.sources.wordnet import prepare_wordnet
from tests.helpers import sample_records

FIXTURES = Path(__file__).parents[1] / "fixtures"


@pytest.fixture(scope="module")
def go_text(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    return prepare_go_text(
        tmp_path_factory.mktemp("go") / "go-text", go_sqlite=FIXTURES / "go_text" / "GO.sqlite", seed=0
    )


@pytest.fixture(scope="module")
def wordnet(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    return prepare_wordnet(tmp_path_factory.mktemp("wn") / "wordnet", root=FIXTURES / "wordnet", seed=0)


def protein_dataset(root: Path) -> Prepared:
    """60 real proteins in a ring with chords (every node has 2 to 3 neighbours), prepared as `files`."""
    records = sample_records(60, max_residues=40)
    write_fasta(records, root / "proteins.fasta")
    ids = [r.id for r in records]
    edges = [(ids[i], ids[(i + 1) % 60]) for i in range(60)] + [
        (ids[i], ids[(i + 7) % 60]) for i in range(0, 60, 3)
    ]
    (root / "graph.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in edges), encoding="utf-8")
    return prepare(
        "files",
        root / "prepared",
        fasta=str(root / "proteins.fasta"),
        graph=str(root / "graph.tsv"),
        valid_fraction=0.3,
        test_fraction=0.1,
    )


@pytest.fixture(scope="module")
def proteins(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    return protein_dataset(tmp_path_factory.mktemp("proteins"))


def _rows(prepared: Prepared, split: str) -> dict[str, dict]:
    return {row["id"]: row for row in prepared.split(split)}


def _adjacency(path: Path, keep: set[str]) -> dict[str, set[str]]:
    """Undirected neighbours read straight from an edge file, both ends in `keep`."""
    near: dict[str, set[str]] = defaultdict(set)
    for line in path.read_text(encoding="utf-8").splitlines():
        a, b = line.split("\t")[:2]
        if a in keep and b in keep:
            near[a].add(b)
            near[b].add(a)
    return near


def _distance_two(near: dict[str, set[str]], node: str) -> set[str]:
    return {w for p in near[node] for w in near[p]} - near[node] - {node}


def _records(pairs: PairSet) -> list[dict]:
    return pairs.dataset.to_list()


# --- graph siblings ------------------------------------------------------------------------------------------


def test_siblings_on_a_hand_made_tree() -> None:
    # r - a, r - b, a - c, a - d, b - e (undirected): distance 2 from c is {d (sibling), r (grandparent)}.
    nodes = ("r", "a", "b", "c", "d", "e")
    r, a, b, c, d, e = range(6)
    edges = np.array([[r, a], [r, b], [a, c], [a, d], [b, e]], dtype=np.int64)
    siblings = Siblings(Graph(nodes, edges, np.ones(len(edges), dtype=np.float32)))
    assert siblings.of(c).tolist() == [r, d]
    assert siblings.of(a).tolist() == [b]
    assert siblings.of(e).tolist() == [r]  # its grandparent: no sibling under b
    assert siblings.of(r).tolist() == [c, d, e]
    rng = np.random.default_rng(0)
    assert {siblings.draw(c, rng) for _ in range(50)} == {r, d}
    lonely = Siblings(Graph(("x", "y"), np.array([[0, 1]]), np.ones(1, dtype=np.float32)))
    assert lonely.draw(0, rng) is None


# --- GO synonyms ---------------------------------------------------------------------------------------------


def test_go_synonym_pairs_are_the_train_terms_synonyms_and_names(go_text: Prepared) -> None:
    pairs = build_pairs(go_text, "train", "go-synonym")
    rows = _rows(go_text, "train")
    expected = {
        (synonym.strip(), row["name"], term)
        for term, row in rows.items()
        for synonym in row["synonyms"]
        if synonym.strip().lower() != row["name"].lower()
    }
    found = [(r["anchor"], r["positive"], r["anchor_id"]) for r in _records(pairs)]
    assert len(found) == len(set(found)) and set(found) == expected and len(expected) > 20
    assert all(r["anchor_id"] == r["positive_id"] for r in _records(pairs))
    assert pairs.dataset.column_names == ["anchor", "positive", "anchor_id", "positive_id"]
    assert pairs.candidates == len(pairs) and pairs.without_negative == 0


def test_go_definitions_as_partners(go_text: Prepared) -> None:
    rows = _rows(go_text, "train")
    text = build_pairs(go_text, "train", "go-synonym", positive="text")
    assert all(r["positive"] == rows[r["anchor_id"]]["text"] for r in _records(text))
    both = build_pairs(go_text, "train", "go-synonym", positive="both")
    names = build_pairs(go_text, "train", "go-synonym")
    assert len(both) == len(names) + len(text)
    with pytest.raises(ValueError, match="positive must be one of"):
        build_pairs(go_text, "train", "go-synonym", positive="definition")


def test_heldout_pairs_come_from_the_valid_split_only(go_text: Prepared) -> None:
    train = set(go_text.split("train")["id"])
    valid = set(go_text.split("valid")["id"])
    held = heldout_pairs(go_text, "go-synonym")
    assert held is not None and held.split == "valid" and len(held) > 0
    assert {r["anchor_id"] for r in _records(held)} <= valid
    trained = build_pairs(go_text, "train", "go-synonym", hard_negatives=True)
    used = {r[key] for r in _records(trained) for key in ("anchor_id", "positive_id", "negative_id")}
    assert used - {None} <= train
    assert heldout_pairs(go_text, "go-synonym", split="nonesuch") is None
    with pytest.raises(ValueError, match="other than train"):
        heldout_pairs(go_text, "go-synonym", split="train")


def test_hard_negatives_are_graph_siblings_with_their_names(go_text: Prepared) -> None:
    rows = _rows(go_text, "train")
    near = _adjacency(go_text.graph_path, set(rows))
    pairs = build_pairs(go_text, "train", "go-synonym", hard_negatives=True, seed=3)
    assert pairs.dataset.column_names == [
        "anchor",
        "positive",
        "negative",
        "anchor_id",
        "positive_id",
        "negative_id",
    ]
    with_negative = 0
    for r in _records(pairs):
        siblings = _distance_two(near, r["anchor_id"])
        if r["negative_id"] is None:
            # None only where the anchor has no sibling whose name differs from the pair's texts
            assert r["negative"] is None
            assert all(rows[s]["name"] in (r["anchor"], r["positive"]) for s in siblings)
            continue
        with_negative += 1
        assert r["negative_id"] in siblings
        assert r["negative_id"] not in near[r["anchor_id"]] and r["negative_id"] != r["anchor_id"]
        assert r["negative"] == rows[r["negative_id"]]["name"]
    assert with_negative > 10 and pairs.without_negative == len(pairs) - with_negative > 0


def test_pairs_are_seeded_and_capped(go_text: Prepared) -> None:
    def build(seed: int, cap: int = 0) -> list[dict]:
        return _records(
            build_pairs(go_text, "train", "go-synonym", hard_negatives=True, seed=seed, max_pairs=cap)
        )

    assert build(0) == build(0)
    assert [r["negative_id"] for r in build(0)] != [r["negative_id"] for r in build(1)]
    everything = {(r["anchor"], r["positive"]) for r in build(0)}
    few = build(0, cap=10)
    assert len(few) == 10 and few == build(0, cap=10) and few != build(2, cap=10)
    assert {(r["anchor"], r["positive"]) for r in few} <= everything
    capped = build_pairs(go_text, "train", "go-synonym", max_pairs=10)
    assert capped.candidates == len(everything)
    with pytest.raises(ValueError, match="max_pairs must be >= 0"):
        build_pairs(go_text, "train", "go-synonym", max_pairs=-1)


def test_the_trainer_sees_texts_only_with_negatives_in_their_own_dataset(go_text: Prepared) -> None:
    plain = trainer_dataset(build_pairs(go_text, "train", "go-synonym"))
    assert plain.column_names == ["anchor", "positive"]
    pairs = build_pairs(go_text, "train", "go-synonym", hard_negatives=True)
    split = trainer_dataset(pairs)
    assert split["triplets"].column_names == ["anchor", "positive", "negative"]
    assert split["pairs"].column_names == ["anchor", "positive"]
    assert len(split["pairs"]) == pairs.without_negative
    assert len(split["triplets"]) + len(split["pairs"]) == len(pairs)
    assert None not in split["triplets"]["negative"]


# --- WordNet -------------------------------------------------------------------------------------------------


def test_wordnet_lemma_pairs(wordnet: Prepared) -> None:
    rows = _rows(wordnet, "train")
    pairs = build_pairs(wordnet, "train", "wordnet-lemma")
    expected = {(lemma, row["text"], synset) for synset, row in rows.items() for lemma in row["lemmas"]}
    found = {(r["anchor"], r["positive"], r["anchor_id"]) for r in _records(pairs)}
    assert found == expected and len(found) == len(pairs) > 5
    assert resolve_kind(wordnet, "auto") == "wordnet-lemma"


# --- proteins: graph neighbours, and unsupervised ------------------------------------------------------------


def test_graph_pairs_are_the_train_edges_each_once(proteins: Prepared) -> None:
    rows = _rows(proteins, "train")
    near = _adjacency(proteins.graph_path, set(rows))
    edges = {frozenset((a, b)) for a in near for b in near[a]}
    pairs = build_pairs(proteins, "train", "graph")
    found = [frozenset((r["anchor_id"], r["positive_id"])) for r in _records(pairs)]
    assert len(found) == len(set(found)) and set(found) == edges and len(edges) > 10
    assert all(r["anchor"] == rows[r["anchor_id"]]["text"] for r in _records(pairs))
    assert all(r["positive"] == rows[r["positive_id"]]["text"] for r in _records(pairs))
    first_ends = [r["anchor_id"] < r["positive_id"] for r in _records(pairs)]  # orientation is drawn
    assert any(first_ends) and not all(first_ends)
    assert resolve_kind(proteins, "auto") == "graph"


def test_graph_negatives_and_heldout_edges(proteins: Prepared) -> None:
    rows = _rows(proteins, "train")
    near = _adjacency(proteins.graph_path, set(rows))
    pairs = build_pairs(proteins, "train", "graph", hard_negatives=True)
    for r in _records(pairs):
        if r["negative_id"] is not None:
            assert r["negative_id"] in _distance_two(near, r["anchor_id"])
            assert r["negative"] == rows[r["negative_id"]]["text"]
    valid = set(proteins.split("valid")["id"])
    inside = _adjacency(proteins.heldout_graph_path, valid)
    held = heldout_pairs(proteins, "graph")
    assert held is not None
    assert {frozenset((r["anchor_id"], r["positive_id"])) for r in _records(held)} == {
        frozenset((a, b)) for a in inside for b in inside[a]
    }


def test_unsupervised_pairs_are_each_train_text_twice(proteins: Prepared) -> None:
    train = proteins.split("train")
    pairs = build_pairs(proteins, "train", "unsupervised")
    assert [r["anchor"] for r in _records(pairs)] == list(train["text"])
    assert all(r["anchor"] == r["positive"] and r["anchor_id"] == r["positive_id"] for r in _records(pairs))
    assert resolve_kind(proteins, "graph", setting="unsupervised") == "unsupervised"
    with pytest.raises(ValueError, match="hard negatives need supervised pairs"):
        build_pairs(proteins, "train", "unsupervised", hard_negatives=True)


def test_clear_errors(go_text: Prepared, wordnet: Prepared, tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"split 'train': go-synonym pairs need .* lacks \['name', 'synonyms'\]"
    ):
        build_pairs(wordnet, "train", "go-synonym")
    with pytest.raises(ValueError, match="setting must be unsupervised or supervised"):
        resolve_kind(go_text, "auto", setting="self")
    with pytest.raises(ValueError, match="pairs must be one of"):
        resolve_kind(go_text, "synonyms")
    (tmp_path / "t.tsv").write_text("id\ttext\na\tone\nb\ttwo\nc\tthree\n", encoding="utf-8")
    bare = prepare(
        "files", tmp_path / "bare", text=str(tmp_path / "t.tsv"), valid_fraction=0.0, test_fraction=0.0
    )
    with pytest.raises(ValueError, match="no graph.tsv"):
        resolve_kind(bare, "auto")
    with pytest.raises(ValueError, match="graph pairs need a graph"):
        build_pairs(bare, "train", "graph")


def test_edge_weights_draw_capped_graph_pairs_or_are_refused(tmp_path: Path) -> None:
    """Ring edges weigh 1 and chords 50: a capped sample is mostly chords; without a cap every edge gives
    one pair, where weights could not act, so the weighted graph is refused by name."""
    records = sample_records(60, max_residues=40)
    write_fasta(records, tmp_path / "proteins.fasta")
    ids = [r.id for r in records]
    ring = [(ids[i], ids[(i + 1) % 60], 1) for i in range(60)]
    chords = [(ids[i], ids[(i + 7) % 60], 50) for i in range(0, 60, 3)]
    lines = "".join(f"{a}\t{b}\t{w}\n" for a, b, w in ring + chords)
    (tmp_path / "graph.tsv").write_text(lines, encoding="utf-8")
    weighted = prepare(
        "files",
        tmp_path / "prepared",
        fasta=str(tmp_path / "proteins.fasta"),
        graph=str(tmp_path / "graph.tsv"),
    )
    chord_pairs = {frozenset((a, b)) for a, b, _ in chords}
    with pytest.raises(ValueError, match="edge weights differ, and graph pairs take every edge once"):
        build_pairs(weighted, "train", "graph")
    assert len(build_pairs(weighted, "valid", "graph").dataset) > 0  # held-out pairs: every edge once
    pairs = _records(build_pairs(weighted, "train", "graph", max_pairs=20))
    drawn = [frozenset((r["anchor_id"], r["positive_id"])) in chord_pairs for r in pairs]
    train = set(_rows(weighted, "train"))
    in_train = [c for c in chord_pairs if c <= train]  # the chords with both ends in train
    # A uniform draw of 20 would take chords in proportion (about a quarter); by weight the train chords
    # (each 50 times a ring edge) are nearly all drawn first.
    assert len(drawn) == 20 and len(in_train) >= 10 and sum(drawn) >= len(in_train) - 1
