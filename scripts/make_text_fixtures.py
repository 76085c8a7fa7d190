"""Write the tiny, real text fixtures of the `wordnet` and `go-text` recipe tests from the installed sources.

CI has neither wordnet-base nor GO.sqlite, so the tests read small extracts of them, committed under
tests/fixtures/:
    wordnet/data.{noun,verb,adj,adv}   whole lines of the Debian wordnet-base data files (licence header
                                       kept): seed synsets from every lexicographer file, chosen to add few
                                       bytes, plus the hypernym chains of the noun and verb seeds
    wordnet/README.md                  provenance, licence, the command
    go_text/GO.sqlite                  GO.db's schema (tables only) holding ~200 real GO terms: seeds with
                                       their ancestors by every relationship, so that every parents and
                                       offspring row between kept terms is there and none points outside
    go_text/GO.sqlite.source.txt       the source note of the database read, plus what was extracted
    go_text/README.md                  provenance, licence, the command

Lines are copied byte for byte, so a WordNet extract still names pointers to synsets it does not hold and
its offsets are no longer byte offsets; the recipe drops such pointers and never seeks by offset.
Rerunning with the same arguments gives identical files.

    .venv/bin/python scripts/make_text_fixtures.py [--wordnet /usr/share/wordnet] \
        [--go-sqlite data/external/GO.sqlite] [--out tests/fixtures]
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sqlite3
import sys
import textwrap
from collections import defaultdict
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

import numpy as np

from seqstruct.data.sources.go import ROOTS
from seqstruct.data.sources.wordnet import FILES, HYPERNYMS, LEXNAMES
from seqstruct.io import atomic_open, atomic_path

logger = logging.getLogger("make_text_fixtures")

# WordNet: seeds per (lexicographer file, ss_type) in each data file, and the longest line a seed may have
# (hub synsets such as "organism" list thousands of hyponyms; they enter only as hypernyms of a seed).
SEEDS_PER_CLASS = {"n": 2, "v": 4, "a": 12, "r": 60}
MAX_SEED_LINE = 300
CANDIDATES = 200  # short lines per class (in file order) a seed is chosen from
# Synsets the tests name, kept whatever the selection: dog (noun.animal, hypernyms canine and domestic
# animal), Einstein (an instance hypernym: physicist), run "move fast by using one's feet" (verb.motion).
WORDNET_NAMED = {"n": ["02084071", "10954498"], "v": ["01926329"], "a": [], "r": []}

# GO: terms the tests name, then random seeds until the closure holds about TARGET_TERMS terms.
GO_NAMED = ["GO:0022857", "GO:0005215", "GO:0000001", "GO:0016020"]
TARGET_TERMS = 200
MAX_SEED_CLOSURE = 25  # seeds whose ancestors by all relationships number more are skipped
GO_TABLES = (
    "metadata", "go_ontology", "go_term", "go_obsolete", "go_synonym",
    "go_bp_parents", "go_mf_parents", "go_cc_parents",
    "go_bp_offspring", "go_mf_offspring", "go_cc_offspring", "map_metadata", "map_counts",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# WordNet
# ---------------------------------------------------------------------------------------------------


def _wordnet_lines(path: Path) -> tuple[list[str], dict[str, str]]:
    """(licence header lines, offset -> data line) of one data file, lines with their line ends."""
    header: list[str] = []
    lines: dict[str, str] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for line in handle:
            if line.startswith("  "):
                header.append(line)
            else:
                lines[line[:8]] = line
    return header, lines


def _hypernym_offsets(line: str) -> list[str]:
    tokens = line.partition(" | ")[0].split()
    position = 4 + 2 * int(tokens[3], 16)
    pointers = [tokens[position + 1 + 4 * k : position + 5 + 4 * k] for k in range(int(tokens[position]))]
    return [offset for symbol, offset, _, _ in pointers if symbol in HYPERNYMS]


def _with_hypernyms(offsets: list[str], lines: dict[str, str]) -> set[str]:
    """`offsets` and their hypernym chains (nouns and verbs have hypernyms within their own file)."""
    found, stack = set(offsets), list(offsets)
    while stack:
        for parent in _hypernym_offsets(lines[stack.pop()]):
            if parent not in found:
                found.add(parent)
                stack.append(parent)
    return found


def extract_wordnet(root: Path, out: Path) -> dict[str, int]:
    """Write the WordNet extract into `out`; returns synsets per data file."""
    counts: dict[str, int] = {}
    for letter, name in FILES.items():
        header, lines = _wordnet_lines(root / name)
        chosen = _with_hypernyms(WORDNET_NAMED[letter], lines)
        candidates: dict[tuple[str, str], list[str]] = defaultdict(list)  # class -> short lines' offsets
        for offset, line in lines.items():
            if len(line) <= MAX_SEED_LINE and (letter not in "nv" or _hypernym_offsets(line)):
                candidates[LEXNAMES[int(line[9:11])], line[12]].append(offset)
        for group in candidates.values():
            for _ in range(min(SEEDS_PER_CLASS[letter], len(group))):
                # The seed whose hypernym chain adds the fewest bytes, so the extract stays small.
                pool = [offset for offset in group[:CANDIDATES] if offset not in chosen] or group[:1]
                added = [_with_hypernyms([offset], lines) - chosen for offset in pool]
                cost = [sum(len(lines[o]) for o in new) for new in added]
                chosen |= added[int(np.argmin(cost))]
        with atomic_open(out / name, "w") as handle:
            handle.writelines(header)
            handle.writelines(lines[offset] for offset in sorted(chosen))
        counts[name] = len(chosen)
        logger.info("%s: %d synsets, %d bytes", out / name, len(chosen), (out / name).stat().st_size)
    return counts


# ---------------------------------------------------------------------------------------------------
# GO
# ---------------------------------------------------------------------------------------------------


def _go_ancestors(db: sqlite3.Connection) -> dict[int, set[int]]:
    """_id -> _ids of its parents by every relationship type, over the three namespaces."""
    parents: dict[int, set[int]] = defaultdict(set)
    for namespace in ("bp", "mf", "cc"):
        for child, parent in db.execute(f"SELECT _id, _parent_id FROM go_{namespace}_parents"):
            parents[child].add(parent)
    return parents


def _closure(seeds: list[int], parents: dict[int, set[int]]) -> set[int]:
    found, stack = set(seeds), list(seeds)
    while stack:
        for parent in parents.get(stack.pop(), ()):
            if parent not in found:
                found.add(parent)
                stack.append(parent)
    return found


def extract_go(source: Path, out: Path, seed: int) -> int:
    """Write the GO.sqlite extract into `out`; returns the number of terms (the `all` row included)."""
    uri = f"file:{quote(str(source.resolve()))}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        ids = dict(db.execute("SELECT go_id, _id FROM go_term"))
        parents = _go_ancestors(db)
        kept = _closure([ids[go_id] for go_id in [*GO_NAMED, *ROOTS.values()]], parents)
        candidates = [row[0] for row in db.execute("SELECT _id FROM go_term WHERE ontology != 'universal'")]
        for candidate in np.random.default_rng(seed).permutation(sorted(candidates)).tolist():
            if len(kept) >= TARGET_TERMS:
                break
            closure = _closure([candidate], parents)
            if len(closure) <= MAX_SEED_CLOSURE:
                kept |= closure
        schema = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
        rows: dict[str, list[tuple]] = {}
        marks = ",".join("?" * len(kept))
        keep = sorted(kept)
        for table in GO_TABLES:
            if table in ("metadata", "go_ontology", "map_metadata"):
                rows[table] = db.execute(f"SELECT * FROM {table}").fetchall()
            elif table in ("go_term", "go_synonym"):
                rows[table] = db.execute(
                    f"SELECT * FROM {table} WHERE _id IN ({marks}) ORDER BY rowid", keep
                ).fetchall()
            elif table.endswith("_parents") or table.endswith("_offspring"):
                other = "_parent_id" if table.endswith("_parents") else "_offspring_id"
                query = (
                    f"SELECT * FROM {table} WHERE _id IN ({marks}) AND {other} IN ({marks}) ORDER BY rowid"
                )
                rows[table] = db.execute(query, keep + keep).fetchall()
            else:  # go_obsolete, map_counts: facts about the whole release, not this extract
                rows[table] = []
    with atomic_path(out / "GO.sqlite") as tmp, closing(sqlite3.connect(tmp)) as copy:
        for table in GO_TABLES:
            copy.execute(schema[table])
            if rows[table]:
                marks = ",".join("?" * len(rows[table][0]))
                copy.executemany(f"INSERT INTO {table} VALUES ({marks})", rows[table])
        copy.commit()
        copy.execute("VACUUM")
    note = source.with_name(source.name + ".source.txt")
    upstream = note.read_text(encoding="utf-8") if note.is_file() else f"source: {source}\n"
    with atomic_open(out / "GO.sqlite.source.txt") as handle:
        handle.write(
            upstream + f"extract: {len(kept)} terms by scripts/make_text_fixtures.py (seed {seed})\n"
        )
    logger.info("%s: %d terms, %d bytes", out / "GO.sqlite", len(kept), (out / "GO.sqlite").stat().st_size)
    return len(kept)


# ---------------------------------------------------------------------------------------------------


def _readme(title: str, body: str, command: str) -> str:
    paragraphs = [textwrap.fill(" ".join(part.split()), width=100) for part in body.strip().split("\n\n")]
    return f"# {title}\n\n" + "\n\n".join(paragraphs) + f"\n\nMade by\n\n    {command}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    parser.add_argument("--go-sqlite", type=Path, default=Path("data/external/GO.sqlite"))
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures"))
    parser.add_argument("--seed", type=int, default=0, help="draws the GO seed terms")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    command = shlex.join(
        ["python", "scripts/make_text_fixtures.py", *(sys.argv[1:] if argv is None else argv)]
    )

    counts = extract_wordnet(args.wordnet, args.out / "wordnet")
    with atomic_open(args.out / "wordnet" / "README.md") as handle:
        handle.write(
            _readme(
                "WordNet fixture",
                f"""
Whole lines of Princeton WordNet 3.0's data files as Debian's `wordnet-base` installs them under
{args.wordnet}: {", ".join(f"{name} {n} synsets" for name, n in counts.items())}. Per lexicographer
file and synset type, the short-lined synsets (with a hypernym, for nouns and verbs) whose hypernym chains
add the fewest bytes (nouns {SEEDS_PER_CLASS["n"]}, verbs
{SEEDS_PER_CLASS["v"]}, adjectives {SEEDS_PER_CLASS["a"]}, adverbs {SEEDS_PER_CLASS["r"]}), the synsets
the tests name, and the hypernym chains of all of them. Lines are unchanged, so offsets are no longer byte
offsets and some pointers name synsets absent here.

Licence: the WordNet 3.0 licence, whose text heads every data file and is kept there (permissive: use,
copy, modify and distribute with the copyright notice; WordNet 3.0 Copyright 2006 by Princeton University).
""",
                command,
            )
        )
    terms = extract_go(args.go_sqlite, args.out / "go_text", args.seed)
    with atomic_open(args.out / "go_text" / "README.md") as handle:
        handle.write(
            _readme(
                "GO fixture",
                f"""
`GO.sqlite`: {terms} real Gene Ontology terms (the `all` pseudo-root included) from the GO.db SQLite at
{args.go_sqlite} (see `GO.sqlite.source.txt`), in GO.db's tables: the terms the tests name and seeded
random terms (seed {args.seed}), each with its ancestors by every relationship; their synonyms, parents
and offspring rows between kept terms; GO.db's `metadata`, `go_ontology` and `map_metadata` whole;
`go_obsolete` and `map_counts` empty (they describe the whole release). No indexes.

Licence: the Gene Ontology, CC BY 4.0 (http://geneontology.org/docs/go-citation-policy/).
""",
                command,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
