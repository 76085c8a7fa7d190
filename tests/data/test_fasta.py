"""FASTA reader and writer: what is accepted, and that every rejection says which file, line and record."""

from __future__ import annotations

import copy
import gzip
from pathlib import Path

import pytest

from seqstruct.data.fasta import (
    PROTEIN_ALPHABET,
    FastaError,
    FastaRecord,
    fit_fasta,
    iter_fasta,
    read_fasta,
    write_fasta,
)
from tests.helpers import sample_records


def _write(tmp_path: Path, text: str, name: str = "in.fasta") -> Path:
    path = tmp_path / name
    # Bytes, so the test controls line endings exactly instead of the platform.
    path.write_bytes(text.encode("utf-8"))
    return path


def _error(path: Path) -> FastaError:
    with pytest.raises(FastaError) as info:
        read_fasta(path)
    return info.value


# --- acceptance -------------------------------------------------------------------------------------------


def test_reads_multiline_records_with_descriptions(tmp_path: Path) -> None:
    path = _write(tmp_path, ">P1 Protein one  OS=Homo sapiens\nMKV\nLLA\nG\n>P2\nACDE\n")
    assert read_fasta(path) == [
        FastaRecord("P1", "Protein one  OS=Homo sapiens", "MKVLLAG"),
        FastaRecord("P2", "", "ACDE"),
    ]


def test_uppercases_and_strips_one_trailing_star(tmp_path: Path) -> None:
    path = _write(tmp_path, ">a\nmkv\nlLa*\n>b\nacd\n*\n")
    assert [(r.id, r.sequence) for r in read_fasta(path)] == [("a", "MKVLLA"), ("b", "ACD")]


def test_accepts_every_iupac_letter_including_rare_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, f">all\n{PROTEIN_ALPHABET}\n>rare\nxbzuo\n")
    records = read_fasta(path)
    assert records[0].sequence == "ACDEFGHIKLMNPQRSTVWYXBZUO"
    assert records[1].sequence == "XBZUO"


def test_ignores_blank_lines_and_reads_crlf(tmp_path: Path) -> None:
    path = _write(tmp_path, "\r\n\r\n>P1 first\r\nMKV\r\n\r\n  \r\nLLA\r\n\r\n>P2\r\nAC\r\n\r\n")
    assert read_fasta(path) == [FastaRecord("P1", "first", "MKVLLA"), FastaRecord("P2", "", "AC")]


def test_reads_gzip_by_content_not_name(tmp_path: Path) -> None:
    for name in ("in.fasta.gz", "looks_plain.fasta"):
        path = tmp_path / name
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(">Z1 zipped\nMKV\nAAA\n")
        assert read_fasta(path) == [FastaRecord("Z1", "zipped", "MKVAAA")]


def test_iter_fasta_streams_records_before_a_later_error(tmp_path: Path) -> None:
    path = _write(tmp_path, ">good\nMKV\n>bad\nMK1\n")
    records = iter_fasta(str(path))
    assert next(records) == FastaRecord("good", "", "MKV")
    with pytest.raises(FastaError, match="record 'bad'"):
        next(records)


# --- rejection --------------------------------------------------------------------------------------------


def test_invalid_character_names_file_line_record_residue_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, ">P0\nAAAA\n\n>P12345 some protein\nMKVLLAGACD\nEFGHIKLMNPQ1RST\n", "bad.fasta")
    error = _error(path)
    message = str(error)
    assert "bad.fasta, line 6, record 'P12345'" in message
    assert "invalid character '1' at residue 22, column 12" in message
    assert f"expected IUPAC protein letters {PROTEIN_ALPHABET}" in message
    assert (Path(error.path).name, error.line, error.record_id) == ("bad.fasta", 6, "P12345")


def test_space_inside_a_sequence_line_is_invalid(tmp_path: Path) -> None:
    error = _error(_write(tmp_path, ">s1\nMKV LLA\n"))
    assert "line 2, record 's1'" in str(error)
    assert "invalid character ' ' at residue 4, column 4" in str(error)


@pytest.mark.parametrize(
    ("text", "line", "residue", "column"),
    [
        (">x\nMK*V\n", 2, 3, 3),  # inside a line
        (">x\nMKV*\nLLA\n", 2, 4, 4),  # ends a line but not the sequence
        (">x\nMKV**\n", 2, 4, 4),  # only one terminator
    ],
)
def test_star_anywhere_but_the_very_end_is_invalid(
    tmp_path: Path, text: str, line: int, residue: int, column: int
) -> None:
    error = _error(_write(tmp_path, text))
    assert (error.line, error.record_id) == (line, "x")
    assert f"invalid character '*' at residue {residue}, column {column}" in str(error)


@pytest.mark.parametrize(
    ("text", "line", "record_id"),
    [
        (">a\nMKV\n>empty desc\n\n>c\nAAA\n", 3, "empty"),  # followed by another record
        (">a\nMKV\n>last\n\n", 3, "last"),  # at the end of the file
        (">onlystar\n*\n", 1, "onlystar"),  # nothing left once the terminator goes
    ],
)
def test_empty_sequence_names_the_header_line(tmp_path: Path, text: str, line: int, record_id: str) -> None:
    error = _error(_write(tmp_path, text, "empty_seq.fasta"))
    assert f"empty_seq.fasta, line {line}, record '{record_id}': empty sequence" in str(error)


def test_header_without_id(tmp_path: Path) -> None:
    error = _error(_write(tmp_path, ">a\nMKV\n>   \nAAA\n", "noid.fasta"))
    assert "noid.fasta, line 3: header has no id" in str(error)
    assert (error.line, error.record_id) == (3, None)


def test_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    error = _error(_write(tmp_path, ">dup one\nMKV\n>other\nAA\n>dup two\nCC\n", "dups.fasta"))
    assert "dups.fasta, line 5, record 'dup': duplicate id, first seen at line 1" in str(error)


def test_text_before_the_first_header(tmp_path: Path) -> None:
    error = _error(_write(tmp_path, "\nMKVLLA\n>a\nAAA\n", "nohead.fasta"))
    assert "nohead.fasta, line 2: expected a '>' header line, found 'MKVLLA'" in str(error)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", gzip.compress(b"")])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "nothing.fasta.gz"
    path.write_bytes(content)
    error = _error(path)
    assert "nothing.fasta.gz: no records" in str(error)
    assert (error.line, error.record_id) == (None, None)


def test_fasta_error_is_a_value_error_and_survives_reduce(tmp_path: Path) -> None:
    # Worker processes send exceptions back through __reduce__ (as deepcopy does): the details must survive.
    error = _error(_write(tmp_path, ">r\nMK9\n"))
    assert isinstance(error, ValueError)
    clone = copy.deepcopy(error)
    assert (str(clone), clone.path, clone.line, clone.record_id) == (str(error), error.path, 2, "r")


# --- writing ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["out.fasta", "out.fasta.gz"])
def test_write_then_read_round_trips(tmp_path: Path, name: str) -> None:
    records = [
        FastaRecord("P1", "first protein OX=9606", "M" + "ACDEFGHIKL" * 13),  # 131 residues: three lines
        FastaRecord("P2", "", "XBZUO"),
        FastaRecord("P3", "exactly one line", "K" * 60),
    ]
    path = tmp_path / name
    write_fasta(records, path)
    assert read_fasta(path) == records
    is_gzip = path.read_bytes()[:2] == b"\x1f\x8b"
    assert is_gzip == name.endswith(".gz")
    opener = gzip.open if is_gzip else open
    with opener(path, "rt", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert lines[0] == ">P1 first protein OX=9606"
    assert [len(line) for line in lines[1:4]] == [60, 60, 11]
    assert "".join(lines[1:4]) == records[0].sequence
    assert lines[4:] == [">P2", "XBZUO", ">P3 exactly one line", "K" * 60]


def test_write_respects_width(tmp_path: Path) -> None:
    path = tmp_path / "narrow.fasta"
    write_fasta([FastaRecord("a", "", "MKVLLAG")], path, width=3)
    assert path.read_text(encoding="utf-8") == ">a\nMKV\nLLA\nG\n"


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (FastaRecord("two words", "", "MKV"), "without whitespace"),
        (FastaRecord("", "", "MKV"), "must be non-empty"),
        (FastaRecord("a", "line\nbreak", "MKV"), "line break"),
        (FastaRecord("a", "", ""), "sequence must be non-empty"),
        (FastaRecord("a", "", "MK1"), "sequence must be non-empty IUPAC"),
    ],
)
def test_write_rejects_records_read_fasta_would_not_accept(
    tmp_path: Path, record: FastaRecord, message: str
) -> None:
    path = tmp_path / "out.fasta"
    path.write_text(">old\nAAA\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        write_fasta([FastaRecord("ok", "", "MKV"), record], path)
    # Atomic: the failed write left the previous file whole and no temporary beside it.
    assert path.read_text(encoding="utf-8") == ">old\nAAA\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.fasta"]


def test_write_rejects_duplicates_no_records_and_bad_width(tmp_path: Path) -> None:
    path = tmp_path / "out.fasta"
    with pytest.raises(ValueError, match="duplicate record id 'a'"):
        write_fasta([FastaRecord("a", "", "MKV"), FastaRecord("a", "", "AAA")], path)
    with pytest.raises(ValueError, match="no records"):
        write_fasta([], path)
    with pytest.raises(ValueError, match="width must be at least 1"):
        write_fasta([FastaRecord("a", "", "MKV")], path, width=0)
    assert not path.exists()


def test_fit_fasta_keeps_whole_records_within_the_size(tmp_path) -> None:
    records = sample_records(300)
    source = tmp_path / "all.fasta.gz"
    write_fasta(records, source)
    roomy = tmp_path / "roomy.fasta.gz"
    assert fit_fasta(source, roomy, 10 * source.stat().st_size) == (300, 300)
    assert read_fasta(roomy) == records
    cut = tmp_path / "cut.fasta.gz"
    kept, total = fit_fasta(source, cut, source.stat().st_size // 3, seed=1)
    assert total == 300 and 60 < kept < 100 and cut.stat().st_size <= source.stat().st_size // 3
    sample = read_fasta(cut)
    assert len(sample) == kept and set(sample) <= set(records)  # whole records, nothing altered
    ids = [r.id for r in records]
    positions = [ids.index(r.id) for r in sample]
    assert positions == sorted(positions) and positions[-1] > 200  # source order, drawn from all of it
    again = tmp_path / "again" / "cut.fasta.gz"  # gzip stores the file's name: the same name, the same size
    again.parent.mkdir()
    fit_fasta(source, again, source.stat().st_size // 3, seed=1)
    assert read_fasta(again) == sample
    with pytest.raises(ValueError, match="not one record fits"):
        fit_fasta(source, tmp_path / "none.fasta.gz", 10)


# --- files that are no FASTA text at all ------------------------------------------------------------------

EXPECTED = "expected a protein FASTA file (UTF-8 text, plain or gzipped)"


def test_a_utf8_bom_is_read_past(tmp_path: Path) -> None:
    with_bom = _write(tmp_path, "\ufeff>P1 first\nACD\n>P2\nEF\n", "bom.fasta")
    plain = _write(tmp_path, ">P1 first\nACD\n>P2\nEF\n", "plain.fasta")
    assert read_fasta(with_bom) == read_fasta(plain)


def test_a_directory_is_a_fasta_error_naming_it(tmp_path: Path) -> None:
    err = _error(tmp_path)
    assert str(err) == f"{tmp_path}: is a directory; {EXPECTED}"
    assert (err.line, err.record_id) == (None, None)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b">P1\nACD\x00\x01\n", "line 2: binary data (a NUL byte), not text"),
        (b">P1 caf\xe9\nACD\n", "line 1: not UTF-8 text (byte 0xe9 cannot be decoded; a binary file?)"),
    ],
)
def test_binary_or_non_utf8_content_is_named_as_such(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "in.fasta"
    path.write_bytes(content)
    assert str(_error(path)) == f"{path}, {reason}; {EXPECTED}"


def test_a_truncated_gzip_is_a_fasta_error_after_the_records_before_it(tmp_path: Path) -> None:
    records = sample_records(300)
    whole = tmp_path / "whole.fasta.gz"
    write_fasta(records, whole)
    cut = tmp_path / "cut.fasta.gz"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    seen = []
    with pytest.raises(FastaError) as info:
        seen.extend(iter_fasta(cut))
    assert str(info.value) == (
        f"{cut}: truncated or corrupt gzip (Compressed file ended before the end-of-stream marker was "
        f"reached); {EXPECTED}"
    )
    assert 0 < len(seen) < len(records) and seen == records[: len(seen)]  # streamed up to the damage
