"""The swissprot-go recipe: its pure steps on hand-made inputs, then the whole recipe on the committed real
fixture (tests/fixtures/swissprot_go, a cut of metastudent-data) with real MMseqs2 clusters."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from seqstruct.data import homology
from seqstruct.data.prepared import Prepared, load_prepared, prepare
from seqstruct.data.sources import embedded, metastudent
from seqstruct.data.sources.swissprot_go import (
    homology_splits,
    most_specific_frequent,
    prepare_swissprot_go,
    shared_term_graph,
)
from seqstruct.data.sources.swissprot_proteins import Propagation, read_sample_go_graph
from tests.data.test_swissprot_proteins import DAG

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "swissprot_go"
MF, BP, CC = "GO:0003674", "GO:0008150", "GO:0005575"
SPLIT_NAMES = ["train", "valid", "test_close", "test_remote"]

# --- mf_class, graph, splits --------------------------------------------------------------------------------


def test_most_specific_frequent_term() -> None:
    propagate = Propagation(DAG, MF)
    labels = [
        propagate(["D"]),  # A B C D
        propagate(["D"]),  # A B C D
        propagate(["B"]),  # A B
        propagate(["C"]),  # A C
        propagate(["B", "C"]),  # A B C
        propagate(["F"]),  # F
        (),
    ]
    train = [True, True, True, True, True, False, True]
    # Train counts: A 5, B 4, C 4, D 2 (F only outside train). With min_size 4, frequent = {A, B, C}.
    assert most_specific_frequent(labels, train, 4, propagate.ancestors) == ["", "", "B", "C", "", "", ""]
    # min_size 2 makes D frequent: the first two rows get D (B and C are its ancestors).
    assert most_specific_frequent(labels, train, 2, propagate.ancestors) == ["D", "D", "B", "C", "", "", ""]
    # min_size 5: only A.
    assert most_specific_frequent(labels, train, 5, propagate.ancestors) == ["A", "A", "A", "A", "A", "", ""]


def test_shared_term_graph_links_proteins_of_specific_terms_once() -> None:
    ids = ["p0", "p1", "p2", "p3"]
    labels = [("a", "b"), ("a",), ("a", "b"), ("c",)]
    graph, terms = shared_term_graph(ids, labels, 2, 2)  # a has 3 proteins, c 1: only b is specific
    assert terms == ["b"] and graph.nodes == tuple(ids)
    assert graph.edges.tolist() == [[0, 2]]
    graph, terms = shared_term_graph(ids, labels, 2, 3)  # a and b; the pair (0, 2) through both, once
    assert terms == ["a", "b"]
    assert graph.edges.tolist() == [[0, 1], [0, 2], [1, 2]]
    assert graph.weights.tolist() == [1.0, 1.0, 1.0] and not graph.directed
    with pytest.raises(ValueError, match="min_term_size"):
        shared_term_graph(ids, labels, 1, 3)


def _random_clusters(n: int, seed: int) -> dict[str, str]:
    """n ids in clusters of 1..30 members (many singletons), representative = first member."""
    rng = np.random.default_rng(seed)
    clusters: dict[str, str] = {}
    i = 0
    while i < n:
        size = int(min(n - i, rng.choice([1, 1, 1, 2, 3, 5, 8, 30])))
        members = [f"P{j:05d}" for j in range(i, i + size)]
        clusters.update(dict.fromkeys(members, members[0]))
        i += size
    return clusters


def test_homology_splits_keep_remote_clusters_out_of_train_and_close_ones_in() -> None:
    clusters = _random_clusters(2000, seed=1)
    split = homology_splits(clusters, 0.1, 0.05, 0.05, seed=0)
    assert set(split) == set(clusters)
    by_split: dict[str, set[str]] = {}
    for record_id, name in split.items():
        by_split.setdefault(name, set()).add(clusters[record_id])  # split -> the clusters it touches
    assert set(by_split) == set(SPLIT_NAMES)
    assert not by_split["test_remote"] & by_split["train"]
    assert not by_split["test_remote"] & (by_split["valid"] | by_split["test_close"])  # whole clusters
    assert by_split["test_close"] <= by_split["train"] and by_split["valid"] <= by_split["train"]
    sizes = Counter(split.values())
    assert sizes["test_remote"] == pytest.approx(200, abs=15)
    assert sizes["test_close"] == 100 and sizes["valid"] == 100


def test_homology_splits_are_seeded_and_independent_of_order() -> None:
    clusters = _random_clusters(500, seed=2)
    reversed_order = dict(reversed(list(clusters.items())))
    assert homology_splits(clusters, seed=3) == homology_splits(reversed_order, seed=3)
    assert homology_splits(clusters, seed=3) != homology_splits(clusters, seed=4)


def test_homology_splits_never_take_a_singleton_into_close_or_valid() -> None:
    clusters = {f"S{i}": f"S{i}" for i in range(50)} | {"a": "a", "b": "a"}
    split = homology_splits(clusters, 0.0, 0.05, 0.05, seed=0)
    assert {name for name in split.values()} == {"train", "test_close"}  # only one of a/b may leave train
    assert sorted(split[i] for i in ("a", "b")) == ["test_close", "train"]


def test_homology_splits_reject_fractions_that_leave_no_train() -> None:
    with pytest.raises(ValueError, match="leave nothing to train on"):
        homology_splits({"a": "a"}, 0.5, 0.3, 0.2)
    with pytest.raises(ValueError, match=r"remote_fraction must be in \[0, 1\)"):
        homology_splits({"a": "a"}, -0.1)


# --- the recipe on the real fixture --------------------------------------------------------------------------

BAD = "ZZJ001"  # a record added to a copy of the fixture, with a 'J' that must make it skipped
OPTIONS = dict(
    remote_fraction=0.15,
    close_fraction=0.1,
    valid_fraction=0.1,
    class_min_size=5,
    max_term_size=30,
    max_length=130,
    threads=1,
)


def _read_fixture_annotations(root: Path) -> dict[str, dict[str, list[str]]]:
    """ontology -> accession -> GO ids, read straight from the annotation files."""
    out: dict[str, dict[str, list[str]]] = {}
    for ontology in ("MFO", "BPO", "CCO"):
        lines = (root / ontology / "goasp_annot.dat").read_text(encoding="ascii").splitlines()
        out[ontology] = {acc: terms for acc, *terms in (line.split("\t") for line in lines)}
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    root = tmp_path_factory.mktemp("fixture") / "dataset_201401"
    shutil.copytree(FIXTURE, root)
    cco = root / "CCO" / "goasp.fasta"
    records = list(metastudent.read_blast_db(cco))
    metastudent.write_blast_db(cco, [*records, (f"{BAD}|{CC}", "MKVJLAG")])
    output = tmp_path_factory.mktemp("prepared") / "swissprot-go"
    prepare("swissprot-go", output, root=str(root), **OPTIONS)
    return load_prepared(output)


@pytest.fixture(scope="module")
def rows(prepared: Prepared) -> dict[str, dict]:
    """id -> row (with its split) over all splits."""
    return {row["id"]: {**row, "split": name} for name in prepared.splits for row in prepared.split(name)}


def test_fixture_is_small_and_documented() -> None:
    files = [p for p in FIXTURE.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 300_000
    assert "make_protein_fixtures.py" in (FIXTURE / "README.md").read_text(encoding="utf-8")


def test_layout_splits_and_columns(prepared: Prepared) -> None:
    for name in (
        "dataset.json",
        "README.md",
        "graph.tsv",
        "graph_heldout.tsv",
        "heldout_nodes.txt",
        "train.fasta",
    ):
        assert (prepared.path / name).is_file(), name
    assert list(prepared.splits) == SPLIT_NAMES
    assert all(len(prepared.split(name)) > 0 for name in SPLIT_NAMES)
    expected = ["id", "text", "length", "go_mf", "go_bp", "go_cc", "cluster_30", "cluster_50", "cluster_90"]
    assert prepared.split("train").column_names == [*expected, "mf_class"]
    assert set(prepared.info.columns) == set(expected[2:]) | {"mf_class"}
    assert prepared.info.kind == "protein" and prepared.info.recipe == "swissprot-go"


def test_proteins_are_the_union_minus_the_skipped_and_the_long(prepared: Prepared, rows: dict) -> None:
    annotations = _read_fixture_annotations(FIXTURE)
    union = set().union(*(set(by_acc) for by_acc in annotations.values()))
    lengths = {
        title.partition("|")[0]: len(seq)
        for ontology in ("MFO", "BPO", "CCO")
        for title, seq in metastudent.read_blast_db(FIXTURE / ontology / "goasp.fasta")
    }
    long = {acc for acc, n in lengths.items() if n > OPTIONS["max_length"]}
    assert long and BAD not in rows
    assert set(rows) == union - long
    assert all(row["length"] == len(row["text"]) <= OPTIONS["max_length"] for row in rows.values())
    counts = prepared.info.counts
    assert counts["proteins read (union of MFO, BPO, CCO)"] == len(union) + 1
    assert counts["proteins skipped: letters outside the protein alphabet ('-', '*', 'J')"] == 1
    assert counts[f"proteins dropped: longer than max_length={OPTIONS['max_length']}"] == len(long)
    assert any(not row["go_mf"] and row["go_bp"] for row in rows.values())  # BP-only proteins came in


def _closure(terms: list[str], parents: dict[str, set[str]]) -> set[str]:
    seen, stack = set(), list(terms)
    while stack:
        term = stack.pop()
        if term not in seen:
            seen.add(term)
            stack.extend(parents.get(term, ()))
    return seen


def test_labels_are_propagated_within_their_ontology(rows: dict) -> None:
    # An independent walk over the fixture's goGraph.txt (parent first; is_a and part_of).
    parents: dict[str, set[str]] = {}
    for line in (FIXTURE / "goGraph.txt").read_text(encoding="ascii").splitlines():
        parent, child, _, relation = line.split("\t")
        if relation in ("is_a", "part_of"):
            parents.setdefault(child, set()).add(parent)
    annotations = _read_fixture_annotations(FIXTURE)
    checked = 0
    for ontology, column, root in (("MFO", "go_mf", MF), ("BPO", "go_bp", BP), ("CCO", "go_cc", CC)):
        for acc, row in rows.items():
            shipped = annotations[ontology].get(acc, [])
            expected = {t for t in _closure(shipped, parents) if root in _closure([t], parents)} - {root}
            assert row[column] == sorted(expected), (acc, column)
            assert set(shipped) - {root} <= set(row[column])
            checked += bool(shipped)
    assert checked > 300


def test_clusters_are_nested(rows: dict) -> None:
    for low, high in (("cluster_30", "cluster_50"), ("cluster_50", "cluster_90")):
        low_of_high: dict[str, str] = {}
        for row in rows.values():
            assert low_of_high.setdefault(row[high], row[low]) == row[low]
    assert all(rows[row["cluster_30"]]["cluster_30"] == row["cluster_30"] for row in rows.values())


def test_splits_do_not_leak_homologues(prepared: Prepared, rows: dict) -> None:
    clusters_of: dict[str, set[str]] = {}
    for row in rows.values():
        clusters_of.setdefault(row["split"], set()).add(row["cluster_30"])
    assert not clusters_of["test_remote"] & clusters_of["train"]
    assert clusters_of["test_close"] <= clusters_of["train"]
    assert clusters_of["valid"] <= clusters_of["train"]
    n = len(rows)
    sizes = prepared.info.splits
    assert sizes["test_close"] == round(OPTIONS["close_fraction"] * n)
    assert sizes["test_remote"] == pytest.approx(OPTIONS["remote_fraction"] * n, abs=0.05 * n)
    assert "method=homology" in (prepared.path / "README.md").read_text(encoding="utf-8")


def test_graph_links_proteins_sharing_a_specific_mf_term(prepared: Prepared, rows: dict) -> None:
    size = Counter(t for row in rows.values() for t in row["go_mf"])
    train = {i for i, row in rows.items() if row["split"] == "train"}

    def linked(a: str, b: str) -> bool:
        shared = set(rows[a]["go_mf"]) & set(rows[b]["go_mf"])
        return any(2 <= size[t] <= OPTIONS["max_term_size"] for t in shared)

    inside = [line.split("\t") for line in (prepared.path / "graph.tsv").read_text().splitlines()]
    heldout = [line.split("\t") for line in (prepared.path / "graph_heldout.tsv").read_text().splitlines()]
    assert inside and heldout
    assert all(a in train and b in train and linked(a, b) for a, b in inside)
    assert all((a not in train or b not in train) and linked(a, b) for a, b in heldout)
    pairs = {frozenset(pair) for pair in inside + heldout}
    assert len(pairs) == len(inside) + len(heldout)  # each pair once
    # Every linked pair is there: check all pairs of the proteins of one specific term.
    term = max((t for t in size if 3 <= size[t] <= OPTIONS["max_term_size"]), key=size.__getitem__)
    members = sorted(i for i, row in rows.items() if term in row["go_mf"])
    assert all(frozenset((a, b)) in pairs for k, a in enumerate(members) for b in members[k + 1 :])
    assert prepared.info.graph["train"]["edges"] == len(inside)


def test_mf_class_is_the_unique_most_specific_frequent_term(prepared: Prepared, rows: dict) -> None:
    train_counts = Counter(t for row in rows.values() if row["split"] == "train" for t in row["go_mf"])
    frequent = {t for t, c in train_counts.items() if c >= OPTIONS["class_min_size"]}
    with_class = [row for row in rows.values() if row["mf_class"]]
    assert with_class and len(with_class) < len(rows)
    for row in with_class:
        assert row["mf_class"] in frequent and row["mf_class"] in row["go_mf"]
    for row in rows.values():
        if not frequent & set(row["go_mf"]):
            assert row["mf_class"] == ""
    assert prepared.info.counts["mf_class: proteins with a class"] == len(with_class)


def test_card_and_dataset_json_say_where_the_data_came_from(prepared: Prepared) -> None:
    card = (prepared.path / "README.md").read_text(encoding="utf-8")
    for text in ("CC BY 4.0", "electronic (IEA)", "metastudent", "MMseqs2", "go_mf"):
        assert text in card
    info = json.loads((prepared.path / "dataset.json").read_text(encoding="utf-8"))
    assert info["config"]["levels"] == [0.9, 0.5, 0.3] and info["config"]["max_length"] == 130


def test_missing_root_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape("apt-get install -y metastudent-data")):
        prepare_swissprot_go(tmp_path / "out", root=str(tmp_path / "absent"))
    assert not (tmp_path / "out").exists()


def test_bad_options_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="source must be one of"):
        prepare_swissprot_go(tmp_path / "out", source="uniprot")
    with pytest.raises(ValueError, match="same column name twice"):
        prepare_swissprot_go(tmp_path / "out", levels=(0.301, 0.299))


# --- source=sample --------------------------------------------------------------------------------------------


def test_sample_graph_is_shipped_and_documented() -> None:
    digest = hashlib.sha256(embedded.SAMPLE_GO_GRAPH.read_bytes()).hexdigest()
    card = embedded.SAMPLE_FASTA.with_name("swissprot_mf_sample.md").read_text(encoding="utf-8")
    assert f"`{embedded.SAMPLE_GO_GRAPH.name}` | `{digest}`" in card
    parents = read_sample_go_graph(embedded.SAMPLE_GO_GRAPH)
    # ATP binding: adenyl ribonucleotide, purine nucleotide, nucleotide binding, binding (GO's own names).
    atp = set(Propagation(parents, MF)(["GO:0005524"]))
    assert {"GO:0005524", "GO:0032559", "GO:0017076", "GO:0000166", "GO:0005488"} <= atp
    assert MF not in atp


def test_sample_source_labels_mf_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The clustering is replaced (every protein its own cluster): the real one is tested above, and on
    # the sample it would take minutes. What is tested here is reading the sample and the subsample.
    def singletons(ids: list[str], sequences: list[str], levels: tuple, **kwargs: object) -> dict:
        return {level: {i: i for i in ids} for level in levels}

    monkeypatch.setattr(homology, "cluster_levels", singletons)
    monkeypatch.setattr(homology, "mmseqs_version", lambda: "(not run)")
    prepared = prepare_swissprot_go(
        tmp_path / "sample", source="sample", max_proteins=200, close_fraction=0.0, valid_fraction=0.0
    )
    train = prepared.split("train")
    assert "go_bp" not in train.column_names and "go_cc" not in train.column_names
    assert sum(prepared.info.splits.values()) == 200
    assert prepared.info.splits["test_remote"] == 20
    assert prepared.info.counts["go_mf: terms absent from the GO graph (kept)"] == 0
    assert all(MF not in row["go_mf"] for row in train)
    card = (prepared.path / "README.md").read_text(encoding="utf-8")
    assert "go_bp, go_cc" in card and "GO MF annotations only" in card
    # The subsample is seeded: the same ids again.
    again = prepare_swissprot_go(
        tmp_path / "again", source="sample", max_proteins=200, close_fraction=0.0, valid_fraction=0.0
    )
    assert sorted(train["id"]) == sorted(again.split("train")["id"])
