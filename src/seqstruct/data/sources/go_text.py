"""The `go-text` recipe: Gene Ontology definitions as a text dataset, with the is_a DAG as its graph.

    seqstruct data prepare go-text [go_sqlite=PATH] [valid_fraction=0.1] [test_fraction=0.1] [seed=0]

One record per GO term that has a definition (`text`); terms without one are dropped and counted in the
card. Label columns:
    name        the term's name, e.g. "glycolytic process"
    namespace   BP | MF | CC
    top_level   the name of the term's top-level category: the direct is_a child of its namespace root
                that is an is_a ancestor of the term. A root child is its own category; a term under several
                categories (common in BP) and the roots themselves get "". Ancestry runs through every
                term, with a definition or not, so dropping a term never changes another's category.
    synonyms    the term's synonym texts (alternative GO ids left out), sorted

The graph is the is_a edges (child, parent) between kept terms, undirected in graph.tsv; the split is a
seeded random split by term. Read through seqstruct.data.sources.go (where the SQLite is looked for).
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from seqstruct.data.prepared import DatasetInfo, Prepared, register_recipe
from seqstruct.data.sources.files import graph_from_pairs, tally, write_random_split
from seqstruct.data.sources.go import NAMESPACES, ROOTS, GeneOntology, read_go, resolve_go_path

if TYPE_CHECKING:
    from datasets import Features

logger = logging.getLogger(__name__)

LICENCE = "CC BY 4.0 (the Gene Ontology; http://geneontology.org/docs/go-citation-policy/)"


def features() -> Features:
    """The splits' column types (datasets imported here: `seqstruct data list` reads the recipes
    without it)."""
    from datasets import Features, List, Value

    return Features(
        {
            "id": Value("string"),
            "text": Value("string"),
            "name": Value("string"),
            "namespace": Value("string"),
            "top_level": Value("string"),
            "synonyms": List(Value("string")),
        }
    )


COLUMNS = {
    "name": "the GO term's name",
    "namespace": "BP (biological process), MF (molecular function) or CC (cellular component)",
    "top_level": "name of the term's single top-level category (is_a child of its root); '' for none/several",
    "synonyms": "list of the term's synonyms",
}


def top_levels(ontology: GeneOntology) -> dict[str, str]:
    """GO id -> the id of its one top-level category (an is_a child of its namespace root), "" when it has
    none (the roots) or several. A top-level category is its own category."""
    tops_of_root = {root: set() for root in ROOTS.values()}
    for child, parents in ontology.is_a.items():
        for parent in parents:
            if parent in tops_of_root:
                tops_of_root[parent].add(child)
    tops = set().union(*tops_of_root.values())

    @cache
    def reach(term: str) -> frozenset[str]:
        # GO is a DAG a few dozen levels deep at most, so plain recursion suffices.
        if term in tops:
            return frozenset({term})
        return frozenset().union(*(reach(parent) for parent in ontology.is_a.get(term, ())))

    found = {term: reach(term) for term in ontology.terms}
    return {
        term: next(iter(categories)) if len(categories) == 1 else "" for term, categories in found.items()
    }


def _release(path: Path) -> str:
    """The GO release date GO.db records in its `metadata` table, or "" where the table lacks it."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        try:
            row = db.execute("SELECT value FROM metadata WHERE name = 'GOSOURCEDATE'").fetchone()
        except sqlite3.DatabaseError:
            return ""
    return row[0] if row else ""


def _debian_version(path: Path) -> str:
    """r-bioc-go.db's version from GO.sqlite.source.txt beside the file (scripts/fetch_go.sh writes it)."""
    note = path.with_name(path.name + ".source.txt")
    if not note.is_file():
        return ""
    found = re.search(r"r-bioc-go\.db[ _]v?([0-9][\w.:~+-]*)", note.read_text(encoding="utf-8"))
    return found.group(1) if found else ""


def _provenance(path: Path) -> str:
    version, release = _debian_version(path), _release(path)
    package = f"Debian r-bioc-go.db {version}" if version else "a GO.db SQLite (package version not recorded)"
    return f"{package}, GO release {release or '(not recorded)'}; read from {path.resolve()}"


@register_recipe("go-text")
def prepare_go_text(
    output: str | Path,
    overwrite: bool = False,
    *,
    go_sqlite: str | Path = "",
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> Prepared:
    """GO term definitions (BP, MF, CC) with name, namespace, top-level category, synonyms; is_a graph."""
    path = resolve_go_path(go_sqlite or None)
    ontology = read_go(path)
    missing = [root for root in ROOTS.values() if root not in ontology.terms]
    if missing:
        raise ValueError(f"{path}: the namespace roots {missing} are missing; is this GO.db's GO.sqlite?")
    category = top_levels(ontology)
    kept = [term for term in ontology.terms.values() if term.definition and term.definition.strip()]
    columns: Mapping[str, list] = {
        "id": [term.id for term in kept],
        "text": [term.definition.strip() for term in kept],
        "name": [term.name for term in kept],
        "namespace": [term.namespace for term in kept],
        "top_level": [ontology.terms[category[term.id]].name if category[term.id] else "" for term in kept],
        "synonyms": [ontology.synonyms.get(term.id, []) for term in kept],
    }
    pairs = [(child, parent) for child, parents in ontology.is_a.items() for parent in parents]
    graph, lost = graph_from_pairs(columns["id"], pairs)
    dropped = len(ontology.terms) - len(kept)
    logger.info("%s: %d terms with a definition, %d without (dropped)", path, len(kept), dropped)

    counts: dict[str, int] = {"terms read": len(ontology.terms), "dropped (no definition)": dropped}
    counts |= {f"namespace {ns}": columns["namespace"].count(ns) for ns in NAMESPACES}
    counts["is_a edges lost with a dropped term"] = lost
    counts |= tally((t or "(none or several)" for t in columns["top_level"]), "top_level: ")
    info = DatasetInfo(
        name="go-text",
        kind="text",
        recipe="go-text",
        config={
            "go_sqlite": str(path.resolve()),
        },
        columns=dict(COLUMNS),
        graph={"meaning": "GO is_a (child, parent) between kept terms, undirected"},
        source=_provenance(path),
        licence=LICENCE,
        counts=counts,
    )
    method = (
        "One record per GO term with a definition (text = the definition). top_level follows is_a edges "
        "only, through all terms, up to the direct is_a children of the namespace root. "
    )
    fractions = (valid_fraction, test_fraction, seed)
    return write_random_split(output, info, columns, features(), graph, method, fractions, overwrite)
