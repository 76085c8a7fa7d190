"""The Gene Ontology as a SQLite database, read from Debian's `r-bioc-go.db` (Bioconductor GO.db).

Real scientific text with a DAG over it: every term has a name, a namespace (BP biological process,
MF molecular function, CC cellular component) and usually a one- or two-sentence definition; terms are
joined by `is_a` (and part_of / regulates) edges, and carry synonyms that paraphrase their names.

Tables used (schema of GO.db's `extdata/GO.sqlite`, GO release 2022-07-01 in Debian's package):
    go_term(_id, go_id, term, ontology, definition)    43,559 rows; `definition` may be NULL (8,419 are);
                                                        one row `all` of ontology `universal` is the
                                                        common parent of the three namespace roots
    go_synonym(_id, synonym, secondary, like_go_id)    like_go_id = 0: a real synonym text; 1: an alt id
    go_{bp,mf,cc}_parents(_id, _parent_id, relationship_type)
                                                        'isa', 'part of', 'regulates', ... edges

Where the file is: an explicit path, else $SEQSTRUCT_GO_SQLITE, else data/external/GO.sqlite (relative
to the working directory), which `scripts/fetch_go.sh` puts there. The database is opened read-only.
Upstream data: the Gene Ontology, CC BY 4.0 (http://geneontology.org/docs/go-citation-policy/).
"""

from __future__ import annotations

import os
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

ENV_VAR = "SEQSTRUCT_GO_SQLITE"
DEFAULT_PATH = Path("data/external/GO.sqlite")
NAMESPACES = ("BP", "MF", "CC")
FETCH_HINT = "run scripts/fetch_go.sh (downloads Debian's r-bioc-go.db and extracts GO.sqlite there)"
IS_A = "isa"  # GO.db's spelling of is_a
# The three namespace roots; every recipe that drops or walks up to them imports them from here.
ROOTS = {"BP": "GO:0008150", "MF": "GO:0003674", "CC": "GO:0005575"}


@dataclass(frozen=True)
class GoTerm:
    id: str  # GO:0000001
    name: str  # "mitochondrion inheritance"
    namespace: str  # BP | MF | CC
    definition: str | None  # None where GO gives none


def resolve_go_path(path: str | Path | None = None) -> Path:
    """The GO SQLite to read: `path`, else $SEQSTRUCT_GO_SQLITE, else data/external/GO.sqlite."""
    if path:
        chosen, origin = Path(path), "given path"
    elif os.environ.get(ENV_VAR):
        chosen, origin = Path(os.environ[ENV_VAR]), f"${ENV_VAR}"
    else:
        chosen, origin = DEFAULT_PATH, "default path"
    if not chosen.is_file():
        raise FileNotFoundError(
            f"GO SQLite not found at {chosen} ({origin}); {FETCH_HINT}, set {ENV_VAR}, or give its path"
        )
    return chosen


@contextmanager
def _connect(path: str | Path | None) -> Iterator[sqlite3.Connection]:
    resolved = resolve_go_path(path).resolve()
    # mode=ro: never create or modify the file (a plain connect would create an empty one at a typo).
    uri = f"file:{quote(str(resolved))}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as connection:
        try:
            connection.execute("SELECT 1 FROM go_term LIMIT 1")
        except sqlite3.DatabaseError as err:
            raise ValueError(f"{resolved}: not a GO.db SQLite (no readable go_term table): {err}") from err
        yield connection


def read_terms(path: str | Path | None = None) -> list[GoTerm]:
    """All terms of the three namespaces (the `all` pseudo-root is left out), sorted by id."""
    with _connect(path) as db:
        rows = db.execute(
            "SELECT go_id, term, ontology, definition FROM go_term WHERE ontology IN (?, ?, ?) ORDER BY go_id",
            NAMESPACES,
        ).fetchall()
    return [GoTerm(go_id, name, namespace, definition or None) for go_id, name, namespace, definition in rows]


def read_synonyms(path: str | Path | None = None) -> dict[str, list[str]]:
    """GO id -> its synonym texts (alternative GO ids left out), each list sorted and without duplicates."""
    with _connect(path) as db:
        rows = db.execute(
            "SELECT t.go_id, s.synonym FROM go_synonym s JOIN go_term t ON t._id = s._id "
            "WHERE s.like_go_id = 0 AND t.ontology IN (?, ?, ?)",
            NAMESPACES,
        ).fetchall()
    synonyms: dict[str, set[str]] = defaultdict(set)
    for go_id, text in rows:
        synonyms[go_id].add(text)
    return {go_id: sorted(texts) for go_id, texts in sorted(synonyms.items())}


def read_parents(path: str | Path | None = None, relationship: str = IS_A) -> dict[str, list[str]]:
    """GO id -> its parents by `relationship` ('isa' by default), within its own namespace.

    Edges to the `all` pseudo-root are dropped, so each namespace root has no parents and the three
    namespaces are separate DAGs. Terms without such parents are absent from the mapping.
    """
    parents: dict[str, set[str]] = defaultdict(set)
    with _connect(path) as db:
        for namespace in NAMESPACES:
            table = f"go_{namespace.lower()}_parents"  # one of three fixed names, not user input
            rows = db.execute(
                f"SELECT c.go_id, p.go_id FROM {table} e "
                "JOIN go_term c ON c._id = e._id JOIN go_term p ON p._id = e._parent_id "
                "WHERE e.relationship_type = ? AND c.ontology = ? AND p.ontology = ?",
                (relationship, namespace, namespace),
            ).fetchall()
            for child, parent in rows:
                parents[child].add(parent)
    return {child: sorted(ps) for child, ps in sorted(parents.items())}


@dataclass(frozen=True)
class GeneOntology:
    """Terms, synonyms and is_a parents read from one GO SQLite."""

    terms: dict[str, GoTerm]  # GO id -> term, in id order
    synonyms: dict[str, list[str]]  # GO id -> synonym texts
    is_a: dict[str, list[str]]  # GO id -> is_a parents in the same namespace
    source: Path  # the file read


def read_go(path: str | Path | None = None) -> GeneOntology:
    """Everything the text tasks need from the GO SQLite (see `resolve_go_path` for where it is looked for)."""
    resolved = resolve_go_path(path)
    terms = {term.id: term for term in read_terms(resolved)}
    return GeneOntology(terms, read_synonyms(resolved), read_parents(resolved), resolved)
