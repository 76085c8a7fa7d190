"""Protein FASTA reading and writing: streaming, strict, and explicit about what is wrong and where.

Every error names the file, the line and the record, because a bad residue in record 300,000 of a
UniProt dump is otherwise a needle in a haystack.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqstruct.io import InputFileError, atomic_open, open_text

# The 20 standard amino acids, alphabetical: the one definition every module imports (k-mer features,
# synthetic generators, the tokenizer's residue tokens), so their letters can never drift apart.
STANDARD_RESIDUES: str = "ACDEFGHIKLMNPQRSTVWY"
# IUPAC protein letters: the standard 20, ambiguity codes X, B, Z, and U (selenocysteine), O (pyrrolysine).
PROTEIN_ALPHABET: str = STANDARD_RESIDUES + "XBZUO"

_EXPECTED = f"expected IUPAC protein letters {PROTEIN_ALPHABET}, lowercase allowed, one trailing '*'"
_LETTERS = frozenset(PROTEIN_ALPHABET + PROTEIN_ALPHABET.lower())
# One regex call per line keeps the hot path in C; Python walks characters only once a line has failed.
_LINE_RE = re.compile(f"[{PROTEIN_ALPHABET}{PROTEIN_ALPHABET.lower()}]*\\*?")
_SEQUENCE_RE = re.compile(f"[{PROTEIN_ALPHABET}{PROTEIN_ALPHABET.lower()}]+")
_ID_RE = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class FastaRecord:
    id: str  # first whitespace-separated word after '>'
    description: str  # rest of the header line, "" when there is none
    sequence: str  # uppercase, line breaks removed, one trailing '*' stripped


class FastaError(ValueError):
    """A malformed FASTA file. `line` is 1-based; `line` and `record_id` are None where there is none."""

    def __init__(self, path: str | Path, line: int | None, record_id: str | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.record_id = record_id
        self.reason = reason
        where = self.path if line is None else f"{self.path}, line {line}"
        if record_id is not None:
            where += f", record {record_id!r}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self) -> tuple[type[FastaError], tuple[str, int | None, str | None, str]]:
        # Rebuilt from its fields, so it survives the trip back from worker processes (datasets.map).
        return (type(self), (self.path, self.line, self.record_id, self.reason))


def _bad_character(char: str, residue: int, column: int) -> str:
    return f"invalid character {char!r} at residue {residue}, column {column} ({_EXPECTED})"


def _first_bad_index(line: str) -> int:
    """Index of the first character `_LINE_RE` rejected in `line`; only called on a line that failed."""
    last = len(line) - 1
    for i, char in enumerate(line):
        if char not in _LETTERS and not (char == "*" and i == last):
            return i
    raise AssertionError(f"_LINE_RE and _LETTERS disagree about {line!r}")


def _record(path: str | Path, header: int, record_id: str, desc: str, chunks: list[str]) -> FastaRecord:
    sequence = "".join(chunks).upper()
    if not sequence:
        reason = "empty sequence (expected at least one sequence line after the header)"
        raise FastaError(path, header, record_id, reason)
    return FastaRecord(record_id, desc, sequence)


# What a FASTA input should be, for the message when a file is no text at all.
_FASTA_FILE = "a protein FASTA file (UTF-8 text, plain or gzipped)"


def iter_fasta(path: str | Path) -> Iterator[FastaRecord]:
    """Yield the records of a plain or gzipped protein FASTA file one at a time, validating as it goes."""
    try:
        yield from _records(path)
    except InputFileError as err:  # a directory, binary data, a truncated gzip: a FastaError like the rest
        raise FastaError(path, err.line, None, err.reason) from err


def _records(path: str | Path) -> Iterator[FastaRecord]:
    first_seen: dict[str, int] = {}  # id -> header line, so a duplicate can point back at the original
    record_id: str | None = None
    description = ""
    header_line = 0
    chunks: list[str] = []
    residues = 0
    star: tuple[int, int, int] | None = None  # (line, column, residue) of a '*' that must stay last
    with open_text(path, _FASTA_FILE) as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = raw.rstrip("\r\n")  # universal newlines already fold CRLF; this guards stray '\r' too
            if not line.strip():
                continue
            if line.startswith(">"):
                if record_id is not None:
                    yield _record(path, header_line, record_id, description, chunks)
                parts = line[1:].split(maxsplit=1)
                if not parts:
                    raise FastaError(path, lineno, None, "header has no id (expected '>ID [description]')")
                record_id = parts[0]
                description = parts[1].rstrip() if len(parts) > 1 else ""
                if record_id in first_seen:
                    reason = f"duplicate id, first seen at line {first_seen[record_id]} (expected unique ids)"
                    raise FastaError(path, lineno, record_id, reason)
                first_seen[record_id] = lineno
                header_line, chunks, residues, star = lineno, [], 0, None
                continue
            if record_id is None:
                raise FastaError(path, lineno, None, f"expected a '>' header line, found {line[:20]!r}")
            if star is not None:  # a '*' is only a terminator when nothing follows it
                raise FastaError(path, star[0], record_id, _bad_character("*", star[2], star[1]))
            if _LINE_RE.fullmatch(line) is None:
                i = _first_bad_index(line)
                raise FastaError(path, lineno, record_id, _bad_character(line[i], residues + i + 1, i + 1))
            if line.endswith("*"):
                star = (lineno, len(line), residues + len(line))
                line = line[:-1]
            chunks.append(line)
            residues += len(line)
    if record_id is None:
        raise FastaError(path, None, None, "no records: the file is empty (expected a '>' header line)")
    yield _record(path, header_line, record_id, description, chunks)


def read_fasta(path: str | Path) -> list[FastaRecord]:
    """Read every record of a plain or gzipped protein FASTA file into memory."""
    return list(iter_fasta(path))


def write_fasta(records: Iterable[FastaRecord], path: str | Path, width: int = 60) -> None:
    """Write records atomically (gzip when `path` ends in .gz), wrapping sequences at `width` residues.

    Records are checked before they are written, so nothing reaches disk that `read_fasta` would reject.
    """
    if width < 1:
        raise ValueError(f"width must be at least 1, got {width}")
    written: set[str] = set()
    with atomic_open(path, "w") as handle:
        for record in records:
            if _ID_RE.fullmatch(record.id) is None:
                raise ValueError(f"{path}: record id {record.id!r} must be non-empty, without whitespace")
            if record.id in written:
                raise ValueError(f"{path}: duplicate record id {record.id!r}")
            if "\n" in record.description or "\r" in record.description:
                raise ValueError(f"{path}: record {record.id!r} has a line break in its description")
            if _SEQUENCE_RE.fullmatch(record.sequence) is None:
                reason = f"sequence must be non-empty IUPAC protein letters {PROTEIN_ALPHABET} (either case)"
                raise ValueError(f"{path}: record {record.id!r}: {reason}")
            written.add(record.id)
            handle.write(f">{record.id} {record.description}\n" if record.description else f">{record.id}\n")
            seq = record.sequence
            handle.writelines(seq[i : i + width] + "\n" for i in range(0, len(seq), width))
        if not written:
            raise ValueError(f"{path}: no records to write (read_fasta rejects an empty file)")


def fit_fasta(source: str | Path, target: str | Path, max_bytes: int, seed: int = 0) -> tuple[int, int]:
    """Write to `target` (gzip when it ends in .gz) as many whole records of `source` as fit in `max_bytes`:
    all of them when they fit, else a seeded random sample, in source order. Returns (kept, total).

    For data that must travel within a size limit (a GPU machine's intake): the sample is uniform, so it
    keeps the source's length and family mix, and the same seed gives the same sample.
    """
    records = read_fasta(source)
    order = np.random.default_rng(seed).permutation(len(records))
    keep = len(records)
    while keep > 0:
        chosen = np.sort(order[:keep])
        write_fasta((records[i] for i in chosen), target)
        size = Path(target).stat().st_size
        if size <= max_bytes:
            return keep, len(records)
        keep = min(keep - 1, int(keep * max_bytes / size * 0.98))  # sizes scale with the records kept
    raise ValueError(f"{source}: not one record fits in {max_bytes} bytes")
