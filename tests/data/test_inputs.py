"""The input files `embed` reads: FASTA, .txt and .jsonl, as lists and as a stream."""

from __future__ import annotations

import itertools

import pytest

from seqstruct.data.fasta import FastaError
from seqstruct.data.inputs import iter_inputs, read_inputs


def test_read_inputs_txt_and_jsonl(tmp_path) -> None:
    txt = tmp_path / "texts.txt"
    txt.write_text("first text\n\n  second, with spaces  \nthird\n", encoding="utf-8")
    assert read_inputs(txt) == (["1", "3", "4"], ["first text", "  second, with spaces  ", "third"])
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text('{"id": "GO:1", "text": "a"}\n\n{"id": 7, "text": "b", "extra": 1}\n', encoding="utf-8")
    assert read_inputs(jsonl) == (["GO:1", "7"], ["a", "b"])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2: not JSON"),
        ('["id", "text"]', "line 2: expected a JSON object"),
        ('{"id": "x"}', 'line 2: expected a JSON object with an "id"'),
        ('{"id": null, "text": "b"}', "got id None"),
        ('{"id": "y", "text": 3}', "got text 3"),
        ('{"id": "a", "text": "again"}', "line 2: id 'a' repeats line 1"),
    ],
)
def test_read_inputs_names_the_bad_jsonl_line(tmp_path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "text": "ok"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl, line 2") as error:
        read_inputs(path)
    assert message in str(error.value)


def test_read_inputs_rejects_unknown_suffixes(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown input type"):
        read_inputs(tmp_path / "inputs.csv")


def test_text_inputs_name_binary_data_and_read_past_a_bom(tmp_path) -> None:

    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufefffirst\nsecond\n".encode())
    assert read_inputs(bom) == (["1", "2"], ["first", "second"])
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\x00\x01\x02garbage\xff")
    with pytest.raises(ValueError, match=r"bin\.jsonl.*JSON lines"):
        read_inputs(binary)


def test_iter_inputs_streams_records_before_a_later_bad_line(tmp_path) -> None:
    path = tmp_path / "texts.jsonl"
    path.write_text('{"id": "a", "text": "ok"}\n{"id": "b", "text": "fine"}\nnot json\n', encoding="utf-8")
    records = iter_inputs(path)
    assert list(itertools.islice(records, 2)) == [("a", "ok"), ("b", "fine")]
    with pytest.raises(ValueError, match="texts.jsonl, line 3: not JSON"):
        next(records)


def test_iter_inputs_refuses_an_unknown_suffix_before_reading(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown input type"):
        iter_inputs(tmp_path / "missing.csv")  # refused at the call, not at the first record


def test_read_inputs_fasta_refuses_a_repeated_id(tmp_path) -> None:
    path = tmp_path / "p.fasta"
    path.write_text(">A\nMKT\n>B\nACD\n")
    assert read_inputs(path) == (["A", "B"], ["MKT", "ACD"])
    path.write_text(">A\nMKT\n>A\nACD\n")
    with pytest.raises(FastaError, match="line 3, record 'A': duplicate id, first seen at line 1"):
        read_inputs(path)
