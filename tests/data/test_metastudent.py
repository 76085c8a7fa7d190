"""metastudent-data reader, tested on a tiny BLAST v4 protein database written here byte for byte.

CI has no metastudent-data package, so `metastudent.write_blast_db` writes the same layout as the shipped
`dataset_201401/*/goasp.fasta.{pin,phr,psq}` (header fields, padding and def-line blobs copied from them).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from seqstruct.data.sources import metastudent
from seqstruct.data.sources.metastudent import (
    is_protein,
    parse_title,
    read_annotations,
    read_blast_db,
    read_go_names,
    read_ontology,
    write_blast_db,
)

# Written out rather than imported, so a change to the module's table fails here.
_NCBISTDAA = "-ABCDEFGHIKLMNPQRSTVWXYZU*OJ"

_LONG_GO = ",".join(f"GO:{n:07d}" for n in range(1, 13))  # 12 ids: a 0x81-form (128..255 byte) title
_VERY_LONG_GO = ",".join(f"GO:{n:07d}" for n in range(20, 44))  # 24 ids: a 0x82-form (>255 byte) title
RECORDS = [
    ("B0RED7|GO:0046933,GO:0046933", "MKVLAG"),
    ("C6DJ78|GO:0000166,GO:0005524,GO:0005524,GO:0000166,GO:0016874", "ACDEFGHIKLMNPQRSTVWY"),
    (f"A7GJB3|{_LONG_GO}", "BZXUOJ*" + "MSTNPALK" * 5),
    (f"Q58380|{_VERY_LONG_GO}", "W"),
]


def test_the_module_table_is_ncbistdaa() -> None:
    # write_blast_db and read_blast_db share the module's table, so a round trip alone cannot catch an
    # error in it; this comparison with the table written out above can.
    assert metastudent.NCBISTDAA == _NCBISTDAA


@pytest.fixture
def db(tmp_path: Path) -> Path:
    prefix = tmp_path / "MFO" / "goasp.fasta"
    write_blast_db(prefix, RECORDS)
    return prefix


def _psq(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + ".psq")


# --- reading -----------------------------------------------------------------------------------------------


def test_fixture_exercises_both_long_form_title_lengths(db: Path) -> None:
    phr = db.with_name(db.name + ".phr").read_bytes()
    assert b"\x1a\x81" in phr and b"\x1a\x82\x01" in phr


def test_read_blast_db_yields_titles_and_sequences(db: Path) -> None:
    assert list(read_blast_db(db)) == RECORDS


def test_read_blast_db_accepts_a_str_prefix(db: Path) -> None:
    assert list(read_blast_db(str(db))) == RECORDS


def test_decoding_in_small_chunks_gives_the_same_records(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Chunks smaller than one record, and boundaries that fall inside records.
    for size in (1, 7, 30):
        monkeypatch.setattr(metastudent, "_CHUNK_RESIDUES", size)
        assert list(read_blast_db(db)) == RECORDS


def test_every_ncbistdaa_code_decodes_to_its_letter(tmp_path: Path) -> None:
    prefix = tmp_path / "all"
    everything = _NCBISTDAA[1:]
    write_blast_db(prefix, [("X1|GO:0000001", everything)])
    assert list(read_blast_db(prefix)) == [("X1|GO:0000001", everything)]


def test_read_ontology_splits_titles_and_drops_repeated_go_ids(db: Path) -> None:
    root = db.parent.parent
    assert list(read_ontology("MFO", root=root)) == [
        ("B0RED7", ["GO:0046933"], "MKVLAG"),
        ("C6DJ78", ["GO:0000166", "GO:0005524", "GO:0016874"], "ACDEFGHIKLMNPQRSTVWY"),
        ("A7GJB3", _LONG_GO.split(","), RECORDS[2][1]),
        ("Q58380", _VERY_LONG_GO.split(","), "W"),
    ]


def test_read_ontology_rejects_an_unknown_ontology(db: Path) -> None:
    with pytest.raises(ValueError, match="ontology must be one of"):
        list(read_ontology("XYZ", root=db.parent.parent))


def test_parse_title() -> None:
    assert parse_title("P1|GO:1,GO:2,GO:1,,GO:3") == ("P1", ["GO:1", "GO:2", "GO:3"])
    assert parse_title("P1|") == ("P1", [])
    for bad in ("P1", "|GO:1"):
        with pytest.raises(ValueError, match="is not 'ACCESSION"):
            parse_title(bad)


def test_is_protein_rejects_gap_stop_and_j() -> None:
    assert is_protein("ACDEFGHIKLMNPQRSTVWY")
    assert not any(is_protein(f"MK{letter}V") for letter in "-*J")


def test_read_go_names(tmp_path: Path) -> None:
    # Format of dataset_201401/nameMapping.txt: "GO:id<TAB>name", one per line.
    (tmp_path / "nameMapping.txt").write_text(
        "GO:0000001\tmitochondrion inheritance\n"
        "GO:0000002\tmitochondrial genome maintenance\n"
        "GO:0042254\tribosome biogenesis\n"
        "\n",
        encoding="utf-8",
    )
    assert read_go_names(tmp_path) == {
        "GO:0000001": "mitochondrion inheritance",
        "GO:0000002": "mitochondrial genome maintenance",
        "GO:0042254": "ribosome biogenesis",
    }


def test_read_annotations(tmp_path: Path) -> None:
    # Format of dataset_201401/MFO/goasp_annot.dat: "ACC<TAB>GO:id<TAB>GO:id…", ids repeated.
    (tmp_path / "MFO").mkdir()
    (tmp_path / "MFO" / "goasp_annot.dat").write_text(
        "B0RED7\tGO:0046933\tGO:0046933\nC6DJ78\tGO:0000166\tGO:0005524\tGO:0005524\tGO:0000166\n",
        encoding="ascii",
    )
    assert read_annotations("MFO", root=tmp_path) == {
        "B0RED7": ["GO:0046933"],
        "C6DJ78": ["GO:0000166", "GO:0005524"],
    }


# --- errors ------------------------------------------------------------------------------------------------


def test_missing_package_says_how_to_install_it(tmp_path: Path) -> None:
    root = tmp_path / "absent"
    hint = re.escape("apt-get install -y metastudent-data")
    with pytest.raises(FileNotFoundError, match=hint):
        list(read_ontology("MFO", root=root))
    with pytest.raises(FileNotFoundError, match=hint):
        read_go_names(root)
    with pytest.raises(FileNotFoundError, match=hint):
        read_annotations("MFO", root=root)


def test_missing_psq_says_which_file(db: Path) -> None:
    _psq(db).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(_psq(db)))):
        list(read_blast_db(db))


def test_residue_code_outside_the_table_names_the_record(db: Path) -> None:
    psq = bytearray(_psq(db).read_bytes())
    first_residue_of_record_2 = 1 + len(RECORDS[0][1]) + 1 + len(RECORDS[1][1]) + 1
    psq[first_residue_of_record_2] = len(_NCBISTDAA)  # 28: one past the last code
    _psq(db).write_bytes(bytes(psq))
    with pytest.raises(ValueError, match=re.escape(f"record 2 ({RECORDS[2][0]})")):
        list(read_blast_db(db))


def test_truncated_psq_is_rejected(db: Path) -> None:
    _psq(db).write_bytes(_psq(db).read_bytes()[:-3])
    with pytest.raises(ValueError, match=r"\.phr/\.psq sizes disagree"):
        list(read_blast_db(db))


def test_truncated_phr_is_rejected(db: Path) -> None:
    phr = db.with_name(db.name + ".phr")
    phr.write_bytes(phr.read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"\.phr/\.psq sizes disagree"):
        list(read_blast_db(db))


def test_misplaced_separator_is_rejected(db: Path) -> None:
    psq = bytearray(_psq(db).read_bytes())
    psq[1 + len(RECORDS[0][1])] = _NCBISTDAA.index("A")  # the 0 byte that ends record 0
    _psq(db).write_bytes(bytes(psq))
    with pytest.raises(ValueError, match="separators are not where"):
        list(read_blast_db(db))


@pytest.mark.parametrize(("field", "value"), [(0, 5), (4, 0)])  # version 5; nucleotide db (type 0)
def test_pin_that_is_not_a_v4_protein_db_is_rejected(db: Path, field: int, value: int) -> None:
    pin = db.with_name(db.name + ".pin")
    data = bytearray(pin.read_bytes())
    struct.pack_into(">i", data, field, value)
    pin.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="expected a BLAST v4 protein database"):
        list(read_blast_db(db))


def test_truncated_pin_is_rejected(db: Path) -> None:
    pin = db.with_name(db.name + ".pin")
    pin.write_bytes(pin.read_bytes()[:-4])
    with pytest.raises(ValueError, match=f"expected .* for {len(RECORDS)} records"):
        list(read_blast_db(db))


def test_write_blast_db_names_a_record_with_a_letter_outside_ncbistdaa(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=re.escape("record 1 (P2|GO:0000001) has letters outside NCBIstdaa: ['1']")
    ):
        write_blast_db(tmp_path / "db", [("P1|GO:0000001", "MKV"), ("P2|GO:0000001", "MK1")])
    assert not list(tmp_path.iterdir())  # nothing half-written
