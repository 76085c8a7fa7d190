"""Swiss-Prot 2014-01 proteins with GO annotations, read from the Debian package `metastudent-data`.

The package ships one BLAST v4 protein database per GO ontology (MFO, BPO, CCO) whose titles are
`ACCESSION|GO:…,GO:…`. ncbi-blast+ is deliberately not required: the v4 format is simple enough to read
here with numpy.

Layout of a v4 protein database `PREFIX.{pin,phr,psq}` (checked against the shipped files):
    .pin  int32 version (=4), int32 db type (1 = protein), int32 length + title, int32 length + date
          (NUL-padded), int32 num_oids, int64 total residues (the one little-endian field), int32 max
          length, then num_oids + 1 header offsets and num_oids + 1 sequence offsets. Every other
          integer is big-endian.
    .phr  per record an ASN.1 BER Blast-def-line-set; the title is its first VisibleString.
    .psq  one NCBIstdaa byte per residue; a 0 byte precedes the first sequence and follows each one, so
          record i is psq[seq_offsets[i] : seq_offsets[i + 1] - 1].
Upstream data: UniProtKB/Swiss-Prot and the Gene Ontology, both CC BY 4.0.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from seqstruct.data.fasta import PROTEIN_ALPHABET
from seqstruct.io import atomic_open

METASTUDENT_DIR = Path("/usr/share/metastudent-data/dataset_201401")
ONTOLOGIES = ("MFO", "BPO", "CCO")
DB_NAME = "goasp.fasta"
INSTALL_HINT = "install the Debian package metastudent-data (apt-get install -y metastudent-data)"

# NCBIstdaa: the byte value is the index into this string. Code 0 ('-', gap) never occurs inside a
# sequence in practice; it is the record separator in .psq.
NCBISTDAA = "-ABCDEFGHIKLMNPQRSTVWXYZU*OJ"
# Letters our FASTA reader accepts; '-', '*' and 'J' are valid NCBIstdaa but not protein residues for it.
PROTEIN_LETTERS = frozenset(PROTEIN_ALPHABET)
_INVALID_CODE = "?"

_VERSION = 4
_PROTEIN = 1
_VISIBLE_STRING = 0x1A
_CHUNK_RESIDUES = 1 << 24  # 16 MiB of .psq decoded at a time


def _decode_table() -> np.ndarray:
    """A 256-entry byte table from NCBIstdaa codes to ASCII letters; codes past the alphabet map to '?'."""
    table = np.full(256, ord(_INVALID_CODE), dtype=np.uint8)
    table[: len(NCBISTDAA)] = np.frombuffer(NCBISTDAA.encode("ascii"), dtype=np.uint8)
    return table


_DECODE = _decode_table()


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {INSTALL_HINT}")
    return path


def _read_index(pin: Path) -> tuple[np.ndarray, np.ndarray]:
    """Header and sequence offsets (num_oids + 1 each) from a v4 protein `.pin` file."""
    data = pin.read_bytes()
    version, db_type, title_len = struct.unpack_from(">iii", data, 0)
    if version != _VERSION or db_type != _PROTEIN:
        raise ValueError(
            f"{pin}: expected a BLAST v4 protein database, got version {version}, type {db_type}"
        )
    pos = 12 + title_len
    (date_len,) = struct.unpack_from(">i", data, pos)
    pos += 4 + date_len
    (num_oids,) = struct.unpack_from(">i", data, pos)
    pos += 4 + 8 + 4  # num_oids, total residues (int64 LE), max length: not needed to read records
    expected = pos + 2 * 4 * (num_oids + 1)
    if len(data) != expected:
        raise ValueError(f"{pin}: {len(data)} bytes, expected {expected} for {num_oids} records")
    header_offsets = np.frombuffer(data, dtype=">i4", count=num_oids + 1, offset=pos).astype(np.int64)
    seq_offsets = np.frombuffer(data, dtype=">i4", count=num_oids + 1, offset=pos + 4 * (num_oids + 1))
    return header_offsets, seq_offsets.astype(np.int64)


def _ber_length(blob: bytes, pos: int) -> tuple[int, int]:
    """Decode a definite BER length at `pos`; return (length, position of the content)."""
    first = blob[pos]
    if first < 0x80:
        return first, pos + 1
    n_bytes = first & 0x7F
    if n_bytes == 0:
        raise ValueError("indefinite length on a primitive string")
    return int.from_bytes(blob[pos + 1 : pos + 1 + n_bytes], "big"), pos + 1 + n_bytes


def _title(blob: bytes) -> str:
    """The title of a Blast-def-line-set: its first VisibleString.

    The set opens with constructed, indefinite-length tags (0x30 0x80 0x30 0x80 0xA0 0x80) and the title
    is the first field of the first def-line, so the first 0x1A byte is the title's tag.
    """
    pos = blob.find(_VISIBLE_STRING)
    if pos < 0:
        raise ValueError("no VisibleString (title) in header")
    length, start = _ber_length(blob, pos + 1)
    return blob[start : start + length].decode("ascii")


def read_blast_db(prefix: Path) -> Iterator[tuple[str, str]]:
    """Yield (title, sequence) for every record of the BLAST v4 protein database `prefix`.{pin,phr,psq}.

    Sequences are NCBIstdaa decoded to one letter per residue; a code outside the alphabet raises
    ValueError naming the record rather than leaking a placeholder letter.
    """
    prefix = Path(prefix)
    pin, phr, psq = (_require(prefix.with_name(prefix.name + ext)) for ext in (".pin", ".phr", ".psq"))
    header_offsets, seq_offsets = _read_index(pin)
    headers = phr.read_bytes()
    residues = np.memmap(psq, dtype=np.uint8, mode="r")
    if len(headers) != header_offsets[-1] or len(residues) != seq_offsets[-1]:
        raise ValueError(f"{prefix}: .phr/.psq sizes disagree with the offsets in .pin")
    # Vectorised format check: the byte before each sequence start must be a separator.
    if residues[seq_offsets - 1].any():
        raise ValueError(f"{prefix}: .psq separators are not where .pin says they are")
    header_bounds, seq_bounds = header_offsets.tolist(), seq_offsets.tolist()
    # Decode in record-aligned chunks: one vectorised lookup per chunk instead of a numpy call per record,
    # without holding the whole decoded database (hundreds of MB) at once.
    for first, stop in _chunks(seq_bounds, _CHUNK_RESIDUES):
        base = seq_bounds[first]
        letters = _DECODE[residues[base : seq_bounds[stop]]].tobytes()
        for i in range(first, stop):
            title = _title(headers[header_bounds[i] : header_bounds[i + 1]])
            seq = letters[seq_bounds[i] - base : seq_bounds[i + 1] - 1 - base].decode("ascii")
            if _INVALID_CODE in seq:
                raise ValueError(f"{prefix}: record {i} ({title}) has a residue code outside NCBIstdaa")
            yield title, seq


def _chunks(bounds: list[int], size: int) -> Iterator[tuple[int, int]]:
    """Split records into runs [first, stop) of at most `size` bytes (but at least one record each)."""
    n_records = len(bounds) - 1
    first = 0
    while first < n_records:
        # lo=first + 2 guarantees stop >= first + 1 even for a record longer than `size`.
        stop = bisect.bisect_right(bounds, bounds[first] + size, lo=first + 2) - 1
        yield first, stop
        first = stop


def _ber_length_bytes(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _ber_integer(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)
    return b"\x02" + _ber_length_bytes(len(body)) + body


_EOC = b"\x00\x00"  # end of an indefinite-length BER value


def _defline_set(title: str, oid: int) -> bytes:
    """A Blast-def-line-set as makeblastdb writes it: title, then seqid gnl|BL_ORD_ID|oid, then taxid 0."""
    text = title.encode("ascii")
    return (
        b"\x30\x80\x30\x80\xa0\x80\x1a" + _ber_length_bytes(len(text)) + text + _EOC  # set, def-line, [0] title
        + b"\xa1\x80\x30\x80\xaa\x80\x30\x80\xa0\x80\x1a\x09BL_ORD_ID" + _EOC  # [1] seqid: general Dbtag
        + b"\xa1\x80\xa0\x80" + _ber_integer(oid) + _EOC * 6  # tag id; close id .. seqid
        + b"\xa2\x80" + _ber_integer(0) + _EOC * 3  # [2] taxid; close taxid, def-line, set
    )  # fmt: skip


_ENCODE = bytes.maketrans(NCBISTDAA.encode("ascii"), bytes(range(len(NCBISTDAA))))


def write_blast_db(
    prefix: Path, records: list[tuple[str, str]], date: str = "Jan 20, 2022  10:32 AM"
) -> None:
    """Write (title, sequence) records as the BLAST v4 protein database `prefix`.{pin,phr,psq}, laid out
    as the shipped metastudent files are (header fields, padding and def-line blobs copied from them).

    For tests and fixtures (CI has no metastudent-data): `read_blast_db` reads it back exactly. The fixed
    `date` keeps the bytes reproducible. A letter outside NCBIstdaa is an error naming the record.
    """
    prefix = Path(prefix)
    if not records:
        raise ValueError(f"{prefix}: a BLAST database needs at least one record")
    headers = [_defline_set(title, oid) for oid, (title, _) in enumerate(records)]
    header_offsets = np.cumsum([0] + [len(blob) for blob in headers])  # [n + 1]
    psq = bytearray(b"\x00")  # a 0 byte precedes the first sequence ...
    seq_offsets = [1]
    for oid, (title, seq) in enumerate(records):
        bad = set(seq) - set(NCBISTDAA[1:])
        if bad:
            raise ValueError(f"{prefix}: record {oid} ({title}) has letters outside NCBIstdaa: {sorted(bad)}")
        psq += seq.encode("ascii").translate(_ENCODE) + b"\x00"  # ... and follows each one
        seq_offsets.append(len(psq))
    name = prefix.name.encode("ascii")
    stamp = date.encode("ascii")
    stamp += b"\x00" * (-(12 + len(name) + 4 + len(stamp)) % 8)  # NUL-padded so num_oids is 8-aligned
    n = len(records)
    pin = (
        struct.pack(">iii", _VERSION, _PROTEIN, len(name))
        + name
        + struct.pack(">i", len(stamp))
        + stamp
        + struct.pack(">i", n)
        + struct.pack("<q", sum(len(seq) for _, seq in records))  # the one little-endian field
        + struct.pack(">i", max(len(seq) for _, seq in records))
        + struct.pack(f">{n + 1}i", *header_offsets.tolist())
        + struct.pack(f">{n + 1}i", *seq_offsets)
    )
    for ext, blob in ((".pin", pin), (".phr", b"".join(headers)), (".psq", bytes(psq))):
        with atomic_open(prefix.with_name(prefix.name + ext), "wb") as handle:
            handle.write(blob)


def parse_title(title: str) -> tuple[str, list[str]]:
    """Split `ACC|GO:1,GO:2` into the accession and its GO ids (deduplicated, first-seen order).

    The titles repeat GO ids (the annotation files do too), so duplicates are dropped here.
    """
    accession, sep, terms = title.partition("|")
    if not sep or not accession:
        raise ValueError(f"title {title!r} is not 'ACCESSION|GO:…'")
    return accession, list(dict.fromkeys(t for t in terms.split(",") if t))


def is_protein(sequence: str) -> bool:
    """True if every letter is one our FASTA reader accepts (no gap '-', stop '*' or 'J')."""
    return PROTEIN_LETTERS.issuperset(sequence)


def _check_ontology(ontology: str) -> None:
    if ontology not in ONTOLOGIES:
        raise ValueError(f"ontology must be one of {ONTOLOGIES}, got {ontology!r}")


def read_ontology(
    ontology: str = "MFO", root: Path = METASTUDENT_DIR
) -> Iterator[tuple[str, list[str], str]]:
    """Yield (accession, go_ids, sequence) for every protein annotated in one GO ontology."""
    _check_ontology(ontology)
    for title, seq in read_blast_db(Path(root) / ontology / DB_NAME):
        accession, go_ids = parse_title(title)
        yield accession, go_ids, seq


def read_annotations(ontology: str = "MFO", root: Path = METASTUDENT_DIR) -> dict[str, list[str]]:
    """Accession -> GO ids (deduplicated, first-seen order) from `goasp_annot.dat`."""
    _check_ontology(ontology)
    path = _require(Path(root) / ontology / "goasp_annot.dat")
    annotations: dict[str, list[str]] = {}
    with open(path, encoding="ascii") as handle:
        for line in handle:
            accession, *terms = line.rstrip("\n").split("\t")
            annotations[accession] = list(dict.fromkeys(t for t in terms if t))
    return annotations


def read_go_names(root: Path = METASTUDENT_DIR) -> dict[str, str]:
    """GO id -> term name from `nameMapping.txt`."""
    path = _require(Path(root) / "nameMapping.txt")
    names: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            go_id, _, name = line.rstrip("\n").partition("\t")
            if go_id:
                names[go_id] = name
    return names
