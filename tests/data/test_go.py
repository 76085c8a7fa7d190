"""GO SQLite reader, tested on a tiny database written here with GO.db's schema.

CI has no r-bioc-go.db, so `write_go_sqlite` creates the tables the reader uses, with the column names,
types and conventions of the shipped `GO.sqlite` (the `all` pseudo-root of ontology `universal`, 'isa' and
'part of' spellings, like_go_id = 1 rows holding alternative ids). `tiny_go` is also the fixture
ontology of the similarity and distillation tests.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from seqstruct.data.sources import go
from seqstruct.data.sources.go import (
    GoTerm,
    read_go,
    read_parents,
    read_synonyms,
    read_terms,
    resolve_go_path,
)

SCHEMA = """
CREATE TABLE go_term (
  _id INTEGER PRIMARY KEY, go_id CHAR(10) NOT NULL UNIQUE, term VARCHAR(255) NOT NULL,
  ontology VARCHAR(9) NOT NULL, definition TEXT NULL);
CREATE TABLE go_synonym (
  _id INTEGER NOT NULL, synonym VARCHAR(255) NOT NULL, secondary CHAR(10) NULL, like_go_id SMALLINT);
CREATE TABLE go_bp_parents (_id INTEGER NOT NULL, _parent_id INTEGER NOT NULL, relationship_type VARCHAR(7) NOT NULL);
CREATE TABLE go_mf_parents (_id INTEGER NOT NULL, _parent_id INTEGER NOT NULL, relationship_type VARCHAR(7) NOT NULL);
CREATE TABLE go_cc_parents (_id INTEGER NOT NULL, _parent_id INTEGER NOT NULL, relationship_type VARCHAR(7) NOT NULL);
"""
ROOTS = {"BP": "GO:0008150", "MF": "GO:0003674", "CC": "GO:0005575"}

Term = tuple[str, str, str, str | None]  # go_id, name, ontology, definition
Edge = tuple[str, str, str]  # child, parent, relationship_type


def write_go_sqlite(
    path: Path, terms: list[Term], edges: list[Edge], synonyms: list[tuple[str, str, int]] = ()
) -> Path:
    """A GO.db-shaped SQLite: `terms` plus the `all` pseudo-root, which every namespace root is_a."""
    rows = [*terms, ("all", "all", "universal", None)]
    ids = {go_id: i + 2 for i, (go_id, *_) in enumerate(rows)}  # GO.db's _id starts at 2 too
    edges = [*edges, *((root, "all", "isa") for root in ROOTS.values() if root in ids)]
    ontology = {go_id: ont for go_id, _, ont, _ in rows}
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        db.executemany("INSERT INTO go_term VALUES (?, ?, ?, ?, ?)", [(ids[r[0]], *r) for r in rows])
        db.executemany(
            "INSERT INTO go_synonym VALUES (?, ?, ?, ?)",
            [(ids[g], text, text if like else None, like) for g, text, like in synonyms],
        )
        for child, parent, relation in edges:
            table = f"go_{ontology[child].lower()}_parents"
            db.execute(f"INSERT INTO {table} VALUES (?, ?, ?)", (ids[child], ids[parent], relation))
    return path


_SUGARS = ["glucose", "fructose", "lactose", "sucrose", "maltose", "galactose"]
_AMINO_ACIDS = ["glycine", "alanine", "serine", "proline", "leucine", "valine"]


def tiny_go_content() -> tuple[list[Term], list[Edge], list[tuple[str, str, int]]]:
    """~60 terms in GO's own phrasing: metabolic, biosynthetic and catabolic processes of sugars and amino
    acids (BP), their transporters (MF), and two cellular components; definitions for all but one."""
    terms: list[Term] = [
        (ROOTS["BP"], "biological_process", "BP", "A biological process is the execution of a genetically-encoded biological module or program."),
        ("GO:0008152", "metabolic process", "BP", "The chemical reactions and pathways, including anabolism and catabolism, by which living organisms transform chemical substances."),
        ("GO:0005975", "carbohydrate metabolic process", "BP", "The chemical reactions and pathways involving carbohydrates, any of a group of organic compounds."),
        ("GO:0006520", "amino acid metabolic process", "BP", "The chemical reactions and pathways involving amino acids, carboxylic acids containing one or more amino groups."),
        (ROOTS["MF"], "molecular_function", "MF", "A molecular process that can be carried out by the action of a single macromolecular machine."),
        ("GO:0005215", "transporter activity", "MF", "Enables the directed movement of substances into, out of or within a cell, or between cells."),
        (ROOTS["CC"], "cellular_component", "CC", "A location, relative to cellular compartments and structures, occupied by a macromolecular machine."),
        ("GO:0016020", "membrane", "CC", None),
    ]  # fmt: skip
    edges: list[Edge] = [
        ("GO:0008152", ROOTS["BP"], "isa"),
        ("GO:0005975", "GO:0008152", "isa"),
        ("GO:0006520", "GO:0008152", "isa"),
        ("GO:0005215", ROOTS["MF"], "isa"),
        ("GO:0016020", ROOTS["CC"], "isa"),
    ]
    synonyms: list[tuple[str, str, int]] = [("GO:0008152", "metabolism", 0), ("GO:0008152", "GO:0044236", 1)]
    number = 100_000
    for parent, group in (("GO:0005975", _SUGARS), ("GO:0006520", _AMINO_ACIDS)):
        for substance in group:
            ids = [f"GO:{number + k:07d}" for k in range(4)]
            number += 4
            terms += [
                (ids[0], f"{substance} metabolic process", "BP", f"The chemical reactions and pathways involving {substance}."),
                (ids[1], f"{substance} biosynthetic process", "BP", f"The chemical reactions and pathways resulting in the formation of {substance}."),
                (ids[2], f"{substance} catabolic process", "BP", f"The chemical reactions and pathways resulting in the breakdown of {substance}."),
                (ids[3], f"{substance} transmembrane transporter activity", "MF", f"Enables the transfer of {substance} from one side of a membrane to the other."),
            ]  # fmt: skip
            edges += [
                (ids[0], parent, "isa"),
                (ids[1], ids[0], "isa"),
                (ids[2], ids[0], "isa"),
                (ids[3], "GO:0005215", "isa"),
                (ids[3], ids[0], "part of"),  # a cross-namespace relation GO.db does not hold; ignored anyway
            ]
            synonyms.append((ids[0], f"{substance} metabolism", 0))
    return terms, edges, synonyms


@pytest.fixture(scope="module")
def tiny_go(tmp_path_factory: pytest.TempPathFactory) -> Path:
    terms, edges, synonyms = tiny_go_content()
    return write_go_sqlite(tmp_path_factory.mktemp("go") / "GO.sqlite", terms, edges, synonyms)


def test_terms_leave_out_the_pseudo_root_and_keep_missing_definitions(tiny_go) -> None:
    terms = read_terms(tiny_go)
    assert [t.id for t in terms] == sorted(t.id for t in terms)
    assert "all" not in {t.id for t in terms} and len(terms) == 8 + 4 * 12
    by_id = {t.id: t for t in terms}
    assert by_id["GO:0016020"] == GoTerm("GO:0016020", "membrane", "CC", None)
    assert by_id["GO:0100000"].definition == "The chemical reactions and pathways involving glucose."
    assert {t.namespace for t in terms} == {"BP", "MF", "CC"}


def test_synonyms_are_texts_not_alternative_ids(tiny_go) -> None:
    synonyms = read_synonyms(tiny_go)
    assert synonyms["GO:0008152"] == ["metabolism"]
    assert synonyms["GO:0100000"] == ["glucose metabolism"]


def test_parents_are_is_a_within_a_namespace(tiny_go) -> None:
    parents = read_parents(tiny_go)
    assert set(ROOTS.values()).isdisjoint(parents)  # edges to `all` are dropped
    assert parents["GO:0100001"] == ["GO:0100000"]
    assert parents["GO:0100003"] == ["GO:0005215"]  # the 'part of' edge is not is_a
    assert read_parents(tiny_go, "part of") == {}  # and it crosses namespaces, so it is dropped there too
    go_data = read_go(tiny_go)
    assert go_data.source == tiny_go and len(go_data.terms) == 56 and go_data.is_a == parents


def test_path_resolution_and_missing_file(tiny_go, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(go.ENV_VAR, raising=False)
    assert resolve_go_path(tiny_go) == tiny_go
    monkeypatch.setenv(go.ENV_VAR, str(tiny_go))
    assert resolve_go_path() == tiny_go
    monkeypatch.delenv(go.ENV_VAR)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        FileNotFoundError, match=r"data/external/GO.sqlite \(default path\).*scripts/fetch_go.sh"
    ):
        read_terms()
    default = tmp_path / "data" / "external" / "GO.sqlite"
    default.parent.mkdir(parents=True)
    default.write_bytes(tiny_go.read_bytes())
    assert len(read_terms()) == 56
    missing = tmp_path / "nowhere" / "GO.sqlite"
    with pytest.raises(FileNotFoundError, match="given path"):
        read_terms(missing)
    assert not missing.exists()  # read-only: nothing is created


def test_other_sqlite_files_are_refused(tmp_path) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE x (y INTEGER)")
    with pytest.raises(ValueError, match="not a GO.db SQLite"):
        read_terms(other)
