"""The leakage audit: best identities and their summary on hand-made rows, then one real MMseqs2 search."""

from __future__ import annotations

import pytest

from seqstruct.data.leakage import audit, audit_table, best_identity, summarise

# A protein and a copy with 10 of its 100 residues changed (positions 40..49 to W): 90% identical.
FIRST = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALR"
SECOND = FIRST[:40] + "W" * 10 + FIRST[50:]


def test_best_identity_keeps_the_highest_and_none_for_no_hit() -> None:
    rows = [(0, 5, 0.4, 1e-9, 50.0), (0, 6, 0.95, 1e-30, 200.0), (2, 1, 0.2, 1e-4, 30.0)]
    assert best_identity(rows, 4) == [0.95, None, 0.2, None]


def test_summary_counts_no_hit_as_zero() -> None:
    row = summarise([0.95, None, 0.2, None])
    assert row["n"] == 4 and row["no_hit"] == 0.5 and row["max"] == 0.95 and row["median"] == 0.1
    assert row[">=0.9"] == row[">=0.5"] == row[">=0.3"] == 0.25
    assert summarise([])["n"] == 0


def test_table_has_one_row_per_set() -> None:
    table = audit_table({"a test_remote": summarise([None, 0.35])})
    assert table.splitlines()[0].startswith("| split | n | no hit | median | p90 | max | >= 90%")
    assert "| a test_remote | 2 | 50.0% |" in table


def test_audit_searches_each_distinct_sequence_once() -> None:
    report = audit({"close": [FIRST, FIRST], "far": ["W" * 60]}, [SECOND], threads=1)
    assert report["close"]["n"] == 2 and report["close"]["no_hit"] == 0.0
    assert report["close"]["max"] == pytest.approx(0.9)
    assert report["far"]["no_hit"] == 1.0
