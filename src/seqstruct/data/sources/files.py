"""The `files` recipe: a user's own FASTA or id/text table, edge list and labels, in the prepared layout.

    seqstruct data prepare files fasta=proteins.fasta graph=edges.tsv labels=labels.tsv -o data/prepared/mine
    seqstruct data prepare files text=sentences.tsv labels=labels.tsv split_column=split -o data/prepared/s

Inputs (plain or gzipped):
    fasta=   protein FASTA (seqstruct.data.fasta rules): a `protein` dataset
    text=    TSV with the header `id<TAB>text`, one record a line: a `text` dataset. Blank lines and lines
             starting with '#' are skipped, as in edge lists and label files; a text holding a tab is an
             error (the file would be ambiguous)
    graph=   optional edge list over the ids (seqstruct.data.graph rules)
    labels=  optional TSV `id<TAB>column...` with a row for every record (seqstruct.data.labels rules);
             its columns become string label columns

The records are split at random (seeded, by id), so a protein file gets train/valid/test, not the homology
splits of the protein recipes; a split made elsewhere (say, by MMseqs2 clusters) comes in through
`split_column=`, a labels column whose values name each record's split (identifiers such as train, valid,
test, test_remote; `train` must be among them). That column is used up, not kept as a label.

The module also holds what the built-in text recipes share with it: the seeded random split and an
undirected graph built from id pairs.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seqstruct.data.fasta import iter_fasta
from seqstruct.data.graph import Graph, read_edge_list
from seqstruct.data.labels import read_labels
from seqstruct.data.prepared import TRAIN, DatasetInfo, Prepared, register_recipe, write_prepared
from seqstruct.io import FileLineError, tsv_rows

if TYPE_CHECKING:  # imported where used: `seqstruct data list` reads the recipes without datasets
    from datasets import Dataset, Features

logger = logging.getLogger(__name__)

VALID, TEST = "valid", "test"
_SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")  # what `datasets` accepts as a split name


# ---------------------------------------------------------------------------------------------------
# Shared by the recipes of this package
# ---------------------------------------------------------------------------------------------------


def random_split(
    ids: Sequence[str], valid_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Split name -> sorted row indices into `ids`: a seeded random `test` and `valid` part, the rest train.

    The draw is over the ids in sorted order, so the split depends on the set of ids and the seed, not on
    the order a source lists them in. A part whose fraction is 0 is left out; one whose fraction is
    positive gets at least one record. Fewer than one record left for training is an error.
    """
    for label, fraction in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0 <= fraction < 1:
            raise ValueError(f"{label} must be in [0, 1), got {fraction}")
    n = len(ids)
    sizes = {
        part: (max(1, round(fraction * n)) if fraction > 0 else 0)
        for part, fraction in ((TEST, test_fraction), (VALID, valid_fraction))
    }
    if n - sum(sizes.values()) < 1:
        raise ValueError(
            f"{n} records leave none to train on after valid {sizes[VALID]} and test {sizes[TEST]}"
        )
    by_id = np.asarray(sorted(range(n), key=ids.__getitem__), dtype=np.int64)  # [n] row indices, id order
    drawn = by_id[np.random.default_rng(seed).permutation(n)]  # [n] row indices in a seeded order
    parts = {TRAIN: drawn[sizes[TEST] + sizes[VALID] :]}
    if sizes[VALID]:
        parts[VALID] = drawn[sizes[TEST] : sizes[TEST] + sizes[VALID]]
    if sizes[TEST]:
        parts[TEST] = drawn[: sizes[TEST]]
    return {name: np.sort(rows) for name, rows in parts.items()}


def graph_from_pairs(nodes: Sequence[str], pairs: Iterable[tuple[str, str]]) -> tuple[Graph, int]:
    """An undirected, unweighted graph over `nodes` from (id, id) pairs, and how many pairs were dropped
    because an end is not among `nodes`. Self-loops and repeats (in either direction) are dropped silently:
    a source that states an edge twice states one edge."""
    index = {node: i for i, node in enumerate(nodes)}
    if len(index) != len(nodes):
        raise ValueError("node ids must be unique")
    edges: set[tuple[int, int]] = set()
    dropped = 0
    for a, b in pairs:
        if a not in index or b not in index:
            dropped += 1
            continue
        i, j = index[a], index[b]
        if i != j:
            edges.add((min(i, j), max(i, j)))
    array = np.asarray(sorted(edges), dtype=np.int64).reshape(-1, 2)  # [E, 2], a < b
    return Graph(tuple(nodes), array, np.ones(len(array), dtype=np.float32)), dropped


def make_splits(
    columns: Mapping[str, Sequence[Any]], features: Features, parts: Mapping[str, np.ndarray]
) -> dict[str, Dataset]:
    """One `datasets.Dataset` per part: the rows `parts[name]` ([K] indices) of every column, typed by
    `features` (so that an all-empty list column is still a list of strings)."""
    from datasets import Dataset

    return {
        name: Dataset.from_dict({key: [values[i] for i in rows] for key, values in columns.items()}, features)
        for name, rows in parts.items()
    }


def write_random_split(
    output: str | Path,
    info: DatasetInfo,
    columns: Mapping[str, Sequence[Any]],
    features: Features,
    graph: Graph | None,
    method: str,
    fractions: tuple[float, float, int],
    overwrite: bool,
) -> Prepared:
    """Write a dataset split at random by record: `fractions` is (valid, test, seed); they join the
    recipe's config in `info` and a sentence saying so ends `method`."""
    valid_fraction, test_fraction, seed = fractions
    info.config |= {"valid_fraction": valid_fraction, "test_fraction": test_fraction, "seed": seed}
    method += f" Random split by record (seed {seed}; valid {valid_fraction}, test {test_fraction})."
    splits = make_splits(columns, features, random_split(columns["id"], valid_fraction, test_fraction, seed))
    return write_prepared(output, info, splits, graph, method, overwrite=overwrite)


def tally(values: Iterable[str], prefix: str) -> dict[str, int]:
    """`{prefix + value: count}`, most frequent first (ties by value): rows for a dataset card."""
    counts = Counter(values)
    return {
        f"{prefix}{value}": count for value, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    }


def file_digest(path: Path) -> str:
    """sha256 of a file, for provenance: the card then says exactly which bytes were read."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------
# The user's files
# ---------------------------------------------------------------------------------------------------


class TextTableError(FileLineError):
    """A malformed id/text TSV. `line` is 1-based, None for errors about the file as a whole."""


def read_text_table(path: str | Path) -> tuple[list[str], list[str]]:
    """(ids, texts) of a TSV with the header `id<TAB>text`, in file order, every cell stripped.

    Errors name the file and line: no header or another header, a row without exactly two columns, an
    empty id or text, an id given twice (both lines).
    """
    path = Path(path)
    ids: list[str] = []
    texts: list[str] = []
    first_line: dict[str, int] = {}
    header = False
    for line_number, raw_cells in tsv_rows(path):
        raw = "\t".join(raw_cells)  # the line, for messages
        cells = [cell.strip() for cell in raw_cells]
        if not header:
            if cells != ["id", "text"]:
                raise TextTableError(path, line_number, f"expected the header 'id<TAB>text', got {raw!r}")
            header = True
            continue
        if len(cells) != 2:
            raise TextTableError(
                path, line_number, f"expected 2 tab-separated columns (id, text), got {len(cells)}"
            )
        record_id, text = cells
        if not record_id or not text:
            raise TextTableError(path, line_number, f"empty {'id' if not record_id else 'text'}")
        if record_id in first_line:
            raise TextTableError(path, line_number, f"id {record_id!r} repeats line {first_line[record_id]}")
        first_line[record_id] = line_number
        ids.append(record_id)
        texts.append(text)
    if not header:
        raise TextTableError(path, None, "no header: the file is empty (expected 'id<TAB>text')")
    if not ids:
        raise TextTableError(path, None, "no records after the header")
    return ids, texts


def _given_split(path: Path, column: str, ids: Sequence[str], values: np.ndarray) -> dict[str, np.ndarray]:
    """Split name -> sorted row indices, from a labels column holding each record's split name."""
    for record_id, value in zip(ids, values, strict=True):
        if not _SPLIT_NAME.match(value):
            raise ValueError(
                f"{path}: record {record_id!r} has split {value!r} in column {column!r}; split names are "
                "identifiers (letters, digits, '_'), e.g. train, valid, test"
            )
    names = sorted(set(values.tolist()))
    if TRAIN not in names:
        raise ValueError(f"{path}: column {column!r} names no {TRAIN!r} split; it names {names}")
    return {name: np.flatnonzero(values == name) for name in [TRAIN, *(n for n in names if n != TRAIN)]}


@register_recipe("files")
def prepare_files(
    output: str | Path,
    overwrite: bool = False,
    *,
    fasta: str | Path = "",
    text: str | Path = "",
    graph: str | Path = "",
    labels: str | Path = "",
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    split_column: str = "",
    name: str = "",
) -> Prepared:
    """Your own FASTA (fasta=) or id/text TSV (text=), with optional graph= edges and labels= columns."""
    from datasets import Features, Value

    output = Path(output)
    if bool(fasta) == bool(text):
        raise ValueError("give exactly one of fasta=FILE (proteins) or text=FILE (an 'id<TAB>text' TSV)")
    source = Path(fasta or text)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such file (the {'fasta' if fasta else 'text'}= input)")
    kind = "protein" if fasta else "text"
    if fasta:
        records = list(iter_fasta(source))
        ids, texts = [r.id for r in records], [r.sequence for r in records]
    else:
        ids, texts = read_text_table(source)
    columns: dict[str, list[Any]] = {"id": ids, "text": texts}
    features = {"id": Value("string"), "text": Value("string")}
    meanings: dict[str, str] = {}
    read: list[Path] = [source]

    parts: dict[str, np.ndarray] | None = None
    if labels:
        label_path = Path(labels)
        table = read_labels(label_path, ids)
        read.append(label_path)
        if split_column:
            if split_column not in table:
                raise ValueError(
                    f"{label_path}: no column {split_column!r} for split_column; it has {list(table)}"
                )
            parts = _given_split(label_path, split_column, ids, table.pop(split_column))
        for column, values in table.items():
            if column in columns:
                raise ValueError(f"{label_path}: label column {column!r} clashes with the record column")
            columns[column] = values.tolist()
            features[column] = Value("string")
            meanings[column] = f"label from {label_path.name}"
    elif split_column:
        raise ValueError(f"split_column={split_column!r} needs labels=FILE holding that column")
    if parts is None:
        parts = random_split(ids, valid_fraction, test_fraction, seed)

    edges: Graph | None = None
    if graph:
        graph_path = Path(graph)
        edges, _ = read_edge_list(graph_path, ids)
        read.append(graph_path)

    config = {
        "fasta": str(Path(fasta).resolve()) if fasta else "",
        "text": str(Path(text).resolve()) if text else "",
        "graph": str(Path(graph).resolve()) if graph else "",
        "labels": str(Path(labels).resolve()) if labels else "",
        "valid_fraction": valid_fraction,
        "test_fraction": test_fraction,
        "seed": seed,
        "split_column": split_column,
        "name": name,
    }
    info = DatasetInfo(
        name=name or output.name,
        kind=kind,
        recipe="files",
        config=config,
        columns=meanings,
        graph={"meaning": f"edges of {Path(graph).name}"} if graph else {},
        source="; ".join(f"{path.resolve()} (sha256 {file_digest(path)})" for path in read),
        licence="that of the input files (not known to seqstruct)",
        counts={"records": len(ids)},
    )
    method = (
        f"Split by the labels column `{split_column}`."
        if split_column
        else f"Split at random by record (seed {seed}; valid {valid_fraction}, test {test_fraction})."
    )
    return write_prepared(
        output, info, make_splits(columns, Features(features), parts), edges, method, overwrite=overwrite
    )
