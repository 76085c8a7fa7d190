from __future__ import annotations

import csv
import gzip

from seqstruct.data.fasta import PROTEIN_ALPHABET, read_fasta
from seqstruct.data.sources.embedded import SAMPLE_FASTA, SAMPLE_GO_MF


def test_embedded_sample_is_20000_valid_proteins_with_go_terms() -> None:
    records = read_fasta(SAMPLE_FASTA)  # raises on any invalid record
    assert len(records) == 20_000
    assert {c for r in records[:500] for c in r.sequence} <= set(PROTEIN_ALPHABET)
    with gzip.open(SAMPLE_GO_MF, "rt", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [row["accession"] for row in rows] == [r.id for r in records]
    assert all(row["go_mf"] and all(t.startswith("GO:") for t in row["go_mf"].split(",")) for row in rows)
