"""Sequence files a user hands in, with their ids: FASTA (proteins; ids from the headers), .txt (one text
per line; ids are line numbers) or .jsonl (one {"id": ..., "text": ...} object per line).

`iter_inputs` streams (id, sequence) records, checking each as it comes (errors name the file and line);
`read_inputs` is the same reading into lists. Ids are unique in every format (FASTA and .jsonl refuse a
repeat, naming both lines), so each reader keeps the ids it has seen: small beside the sequences it
does not keep.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

from seqstruct.data.fasta import iter_fasta
from seqstruct.io import open_text

logger = logging.getLogger(__name__)


FASTA_SUFFIXES = (".fasta", ".fa", ".faa", ".fas", ".fasta.gz", ".fa.gz", ".faa.gz")


def iter_inputs(path: str | Path) -> Iterator[tuple[str, str]]:
    """(id, sequence or text) of each record of an input file, read lazily; the format is chosen by the
    suffix, and an unknown one is refused here, before anything is read."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".txt"):
        return _iter_txt(path)
    if name.endswith(".jsonl"):
        return _iter_jsonl(path)
    if name.endswith(FASTA_SUFFIXES):
        return ((record.id, record.sequence) for record in iter_fasta(path))
    raise ValueError(
        f"{path}: unknown input type; expected FASTA ({', '.join(FASTA_SUFFIXES)}), .txt (one text per "
        'line) or .jsonl (one {"id": ..., "text": ...} object per line)'
    )


def read_inputs(path: str | Path) -> tuple[list[str], list[str]]:
    """(ids, sequences or texts) of an input file, chosen by its suffix: FASTA, .txt or .jsonl."""
    ids: list[str] = []
    sequences: list[str] = []
    for record_id, sequence in iter_inputs(path):
        ids.append(record_id)
        sequences.append(sequence)
    return ids, sequences


def _iter_txt(path: Path) -> Iterator[tuple[str, str]]:
    """Each non-blank line is a text; its id is its 1-based line number (blank lines are skipped)."""
    blank = 0
    with open_text(path, "text, one per line") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.rstrip("\r\n")
            if text.strip():
                yield str(number), text
            else:
                blank += 1
    if blank:
        logger.info("%s: skipped %d blank lines (ids are line numbers all the same)", path, blank)


def _iter_jsonl(path: Path) -> Iterator[tuple[str, str]]:
    """One JSON object per non-blank line with a string or integer "id" (unique) and a string "text"."""
    first_line: dict[str, int] = {}  # id -> line, so a repeat can point back at the original
    expected = 'expected a JSON object with an "id" (string or integer) and a "text" (string)'
    with open_text(path, 'JSON lines, one {"id": ..., "text": ...} object each') as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}, line {number}: not JSON ({err.msg}); {expected}") from None
            if not isinstance(row, dict) or "id" not in row or "text" not in row:
                got = sorted(row) if isinstance(row, dict) else type(row).__name__
                raise ValueError(f"{path}, line {number}: {expected}; got {got}")
            if isinstance(row["id"], bool) or not isinstance(row["id"], (str, int)):
                raise ValueError(f"{path}, line {number}: {expected}; got id {row['id']!r}")
            if not isinstance(row["text"], str):
                raise ValueError(f"{path}, line {number}: {expected}; got text {row['text']!r}")
            record_id = str(row["id"])
            if record_id in first_line:
                raise ValueError(
                    f"{path}, line {number}: id {record_id!r} repeats line {first_line[record_id]}"
                )
            first_line[record_id] = number
            yield record_id, row["text"]
