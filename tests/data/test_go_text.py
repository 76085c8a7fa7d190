"""The `go-text` recipe, run on 210 real GO terms (tests/fixtures/go_text, made by
scripts/make_text_fixtures.py from Debian's r-bioc-go.db)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from seqstruct.data.graph import read_edge_list
from seqstruct.data.prepared import Prepared
from seqstruct.data.sources.go import ROOTS, GeneOntology, GoTerm
from seqstruct.data.sources.go_text import prepare_go_text, top_levels
from tests.data.test_go import tiny_go_content, write_go_sqlite

FIXTURE = Path(__file__).parents[1] / "fixtures" / "go_text" / "GO.sqlite"


@pytest.fixture(scope="module")
def go_text(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    return prepare_go_text(tmp_path_factory.mktemp("go") / "go-text", go_sqlite=FIXTURE, seed=0)


def _query(sql: str) -> list[tuple]:
    with closing(sqlite3.connect(f"file:{FIXTURE}?mode=ro", uri=True)) as db:
        return db.execute(sql).fetchall()


def _rows(prepared: Prepared) -> dict[str, dict]:
    return {row["id"]: row for split in prepared.splits.values() for row in split}


def test_top_levels_by_hand() -> None:
    # R is the BP root; A and B its children. X under A, Y under A and B, Z under X, W under Y and X,
    # C under A and under the root itself (a root child: its own category).
    bp = ROOTS["BP"]
    names = [bp, "A", "B", "X", "Y", "Z", "W", "C"]
    terms = {n: GoTerm(n, f"name {n}", "BP", "d") for n in names}
    is_a = {"A": [bp], "B": [bp], "X": ["A"], "Y": ["A", "B"], "Z": ["X"], "W": ["X", "Y"], "C": ["A", bp]}
    found = top_levels(GeneOntology(terms, {}, is_a, Path("-")))
    assert found == {bp: "", "A": "A", "B": "B", "X": "A", "Y": "", "Z": "A", "W": "", "C": "C"}


def test_one_record_per_term_with_a_definition(go_text: Prepared) -> None:
    defined = _query(
        "SELECT go_id, definition FROM go_term WHERE ontology IN ('BP', 'MF', 'CC') AND definition IS NOT NULL"
    )
    undefined = _query(
        "SELECT go_id FROM go_term WHERE ontology IN ('BP', 'MF', 'CC') AND definition IS NULL"
    )
    rows = _rows(go_text)
    assert {go_id: text.strip() for go_id, text in defined} == {i: row["text"] for i, row in rows.items()}
    assert len(undefined) > 0 and not {go_id for (go_id,) in undefined} & set(rows)
    assert go_text.info.counts["dropped (no definition)"] == len(undefined)
    assert sum(go_text.info.counts[f"namespace {ns}"] for ns in ("BP", "MF", "CC")) == len(rows)
    tenth = round(0.1 * len(rows))
    assert go_text.info.splits == {"train": len(rows) - 2 * tenth, "valid": tenth, "test": tenth}


def test_known_terms_have_their_labels(go_text: Prepared) -> None:
    rows = _rows(go_text)
    transporter = rows["GO:0005215"]  # a direct child of molecular_function: its own category
    assert transporter["name"] == "transporter activity" and transporter["namespace"] == "MF"
    assert transporter["top_level"] == "transporter activity" and transporter["synonyms"] == ["carrier"]
    assert rows["GO:0022857"]["top_level"] == "transporter activity"  # transmembrane transporter activity
    assert rows["GO:0016020"]["top_level"] == "cellular anatomical entity"  # membrane
    assert rows["GO:0016020"]["namespace"] == "CC"
    # mitochondrion inheritance: is_a organelle inheritance and mitochondrion distribution, which lead to
    # two categories (cellular process, localization).
    assert rows["GO:0000001"]["top_level"] == "" and rows["GO:0000001"]["synonyms"] == [
        "mitochondrial inheritance"
    ]
    assert rows[ROOTS["MF"]]["top_level"] == ""


def test_the_graph_is_is_a_between_kept_terms(go_text: Prepared) -> None:
    rows = _rows(go_text)
    ids = list(rows)
    edges: set[frozenset[str]] = set()
    for path in (go_text.graph_path, go_text.heldout_graph_path):
        graph, _ = read_edge_list(path, ids)
        edges |= {frozenset((ids[a], ids[b])) for a, b in graph.edges.tolist()}
    is_a = {
        frozenset(pair)
        for table in ("go_bp_parents", "go_mf_parents", "go_cc_parents")
        for pair in _query(
            f"SELECT c.go_id, p.go_id FROM {table} e JOIN go_term c ON c._id = e._id "
            "JOIN go_term p ON p._id = e._parent_id WHERE e.relationship_type = 'isa'"
        )
        if set(pair) <= set(rows)
    }
    assert edges == is_a and frozenset(("GO:0022857", "GO:0005215")) in edges
    train = set(go_text.split("train")["id"])
    inside, _ = read_edge_list(go_text.graph_path, ids)
    assert all(ids[a] in train and ids[b] in train for a, b in inside.edges.tolist())


def test_card_provenance_and_licence(go_text: Prepared) -> None:
    assert "Debian r-bioc-go.db 3.16.0-1" in go_text.info.source
    assert "GO release 2022-07-01" in go_text.info.source
    assert go_text.info.licence.startswith("CC BY 4.0")
    readme = (go_text.path / "README.md").read_text()
    assert "top_level: transporter activity" in readme and "dropped (no definition)" in readme


def test_the_split_is_seeded(go_text: Prepared, tmp_path: Path) -> None:
    same = prepare_go_text(tmp_path / "same", go_sqlite=str(FIXTURE), seed=0)
    other = prepare_go_text(tmp_path / "other", go_sqlite=str(FIXTURE), seed=5)
    assert same.split("valid")["id"] == go_text.split("valid")["id"]
    assert other.split("valid")["id"] != go_text.split("valid")["id"]


def test_a_database_without_release_metadata_says_so(tmp_path: Path) -> None:
    terms, edges, synonyms = tiny_go_content()
    path = write_go_sqlite(tmp_path / "GO.sqlite", terms, edges, synonyms)
    prepared = prepare_go_text(tmp_path / "out", go_sqlite=path)
    assert "package version not recorded" in prepared.info.source
    assert "GO release (not recorded)" in prepared.info.source
    assert _rows(prepared)["GO:0005975"]["top_level"] == "metabolic process"


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="fetch_go.sh"):
        prepare_go_text(tmp_path / "out", go_sqlite=tmp_path / "nope.sqlite")
    rootless = write_go_sqlite(tmp_path / "rootless.sqlite", [("GO:0000001", "x", "BP", "d")], [])
    with pytest.raises(ValueError, match=r"rootless.sqlite: the namespace roots .*GO:0008150"):
        prepare_go_text(tmp_path / "out", go_sqlite=rootless)
