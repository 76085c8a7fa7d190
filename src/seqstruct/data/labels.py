"""Per-node labels for evaluation: a TSV whose rows are keyed by the FASTA record ids.

File format: a header `id  <column>...`, then one row per node, tab-separated, plain or gzipped; blank
lines and lines starting with `#` are skipped (before the header too). Labels are kept as strings: a
class name is a name, whether or not it looks like a number.

Every row must be complete, because an evaluation that silently scores a subset of the nodes is an
evaluation of a different dataset. So these are errors naming the file and the 1-based line: a missing
header or one whose first column is not `id`, a repeated column name, a row with the wrong number of
columns, an empty cell, a repeated id. Ids that match no node, and nodes without a row, are errors
naming the first few ids and their count.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqstruct.io import FileLineError, tsv_rows

_SHOWN = 5  # ids quoted in an error before "..."


class LabelError(FileLineError):
    """A malformed label file. `line` is 1-based, None for errors about the file as a whole."""


def _named(ids: Sequence[str]) -> str:
    shown = ", ".join(repr(i) for i in ids[:_SHOWN])
    return shown + (" ..." if len(ids) > _SHOWN else "")


def _header(columns: list[str], path: Path, line: int) -> list[str]:
    """The label column names of a header line, checked."""
    if columns[0].strip() != "id":
        raise LabelError(path, line, f"expected a header whose first column is 'id', got {columns[0]!r}")
    names = [name.strip() for name in columns[1:]]
    if not names:
        raise LabelError(path, line, "the header names no label column after 'id'")
    for position, name in enumerate(names, start=2):
        if not name:
            raise LabelError(path, line, f"header column {position} has no name")
        if names.index(name) != position - 2:
            raise LabelError(path, line, f"header column {name!r} is repeated")
    return names


def read_labels(
    path: str | Path, node_ids: Sequence[str], columns: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Read `path` into {column name: [N] str array aligned with `node_ids`}, in header order.

    `columns` picks label columns (in the order given); None keeps them all. An unknown column is an
    error listing the columns the file has.
    """
    path = Path(path)
    index = {node: i for i, node in enumerate(node_ids)}
    if len(index) != len(node_ids):
        raise ValueError("node ids must be unique")
    names: list[str] | None = None
    rows: list[list[str] | None] = [None] * len(node_ids)  # per node, its label cells
    first_line: dict[str, int] = {}  # id -> line it was given on, to name both lines of a repeat
    unknown: list[str] = []
    for line_number, cells in tsv_rows(path, "a label table (TSV: a header line, then id<TAB>label...)"):
        if names is None:
            names = _header(cells, path, line_number)
            continue
        if len(cells) != len(names) + 1:
            raise LabelError(
                path, line_number, f"expected {len(names) + 1} tab-separated columns, got {len(cells)}"
            )
        cells = [cell.strip() for cell in cells]
        node, labels = cells[0], cells[1:]
        for name, label in zip(names, labels, strict=True):
            if not label:
                raise LabelError(path, line_number, f"empty {name!r} label for {node!r}")
        if node in first_line:
            raise LabelError(path, line_number, f"id {node!r} repeats line {first_line[node]}")
        first_line[node] = line_number
        if node not in index:
            unknown.append(node)
            continue
        rows[index[node]] = labels
    if names is None:
        raise LabelError(path, None, "no header: the file is empty (expected 'id<TAB>label column...')")
    if unknown:
        raise LabelError(path, None, f"{len(unknown)} ids match no record: {_named(unknown)}")
    missing = [node for node, row in zip(node_ids, rows, strict=True) if row is None]
    if missing:
        raise LabelError(path, None, f"{len(missing)} records have no labels: {_named(missing)}")
    wanted = list(names) if columns is None else list(columns)
    for name in wanted:
        if name not in names:
            raise LabelError(path, None, f"no label column {name!r}; the file has {names}")
    table = np.array(rows, dtype=str).reshape(len(node_ids), len(names))  # [N, columns]
    return {name: table[:, names.index(name)] for name in wanted}
