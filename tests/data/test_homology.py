"""MMseqs2 wrapper: parsers on canned output, then the binary end to end on real Swiss-Prot proteins.

The Makefile installs mmseqs2 for CI, so the end-to-end tests require the binary rather than skip.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from seqstruct.data import homology
from seqstruct.data.homology import (
    Hit,
    best_hits,
    cluster,
    cluster_levels,
    parse_cluster_tsv,
    parse_search_tsv,
    require_mmseqs,
    search,
    search_rows,
)
from tests.helpers import sample_records

# --- parsing -----------------------------------------------------------------------------------------------


def test_parse_cluster_tsv_maps_members_to_representatives() -> None:
    text = ["1\t1\n", "1\t0\n", "2\t2\n", "\n", "1\t3\n"]
    assert parse_cluster_tsv(text, 4) == [1, 1, 2, 1]


def test_parse_cluster_tsv_rejects_a_record_without_cluster() -> None:
    with pytest.raises(ValueError, match=r"x\.tsv: 1 records have no cluster \(first: \[2\]\)"):
        parse_cluster_tsv(["0\t0\n", "0\t1\n"], 3, "x.tsv")


def test_parse_cluster_tsv_rejects_a_member_in_two_clusters() -> None:
    with pytest.raises(ValueError, match=r"x\.tsv, line 3: record 1 is in two clusters"):
        parse_cluster_tsv(["0\t0\n", "0\t1\n", "1\t1\n"], 2, "x.tsv")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("0\t0\t0\n", "expected 'representative<TAB>member'"),
        ("0\tP12345\n", "is not a record index"),
        ("5\t0\n", "below 2"),
    ],
)
def test_parse_cluster_tsv_names_the_line_of_a_bad_row(line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=rf"c\.tsv, line 2: .*{re.escape(reason)}"):
        parse_cluster_tsv(["1\t1\n", line], 2, "c.tsv")


def test_parse_search_tsv_reads_indices_and_scores() -> None:
    text = ["0\t1\t0.968\t1.748E-19\t61\n", "1\t0\t1.000\t6.054E-20\t62\n"]
    assert parse_search_tsv(text, 2, 3) == [(0, 1, 0.968, 1.748e-19, 61.0), (1, 0, 1.0, 6.054e-20, 62.0)]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("0\t1\t0.5\t1e-3\n", "expected 5 columns"),
        ("0\t1\tabc\t1e-3\t40\n", "must be numbers"),
        ("0\t1\t55.0\t1e-3\t40\n", "outside 0..1"),  # pident (percent) where fident was asked for
        ("0\t7\t0.5\t1e-3\t40\n", "below 3"),  # target index out of range
    ],
)
def test_parse_search_tsv_names_the_line_of_a_bad_row(line: str, reason: str) -> None:
    with pytest.raises(ValueError, match=rf"h\.tsv, line 1: .*{re.escape(reason)}"):
        parse_search_tsv([line], 2, 3, "h.tsv")


def test_best_hits_sorts_each_query_by_bits_and_truncates() -> None:
    rows = [
        (1, 0, 0.5, 1e-5, 30.0),
        (0, 2, 0.9, 1e-9, 50.0),
        (0, 1, 0.4, 1e-3, 20.0),
        (0, 3, 0.8, 1e-12, 70.0),
        (0, 4, 0.8, 1e-13, 50.0),  # ties on bits with target 2: the lower evalue first
    ]
    assert best_hits(rows, 3) == [rows[3], rows[4], rows[1], rows[0]]
    assert best_hits(rows, 1) == [rows[3], rows[0]]


def test_require_mmseqs_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match=re.escape("apt-get install -y mmseqs2")):
        require_mmseqs()


def test_failing_mmseqs_is_an_error_with_its_output(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "mmseqs"
    fake.write_text("#!/bin/sh\necho 'Input database missing' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(homology, "require_mmseqs", lambda: str(fake))
    with pytest.raises(RuntimeError, match=r"(?s)mmseqs failed \(exit 3\).*Input database missing"):
        cluster(["a"], ["MKV"], 0.9)


def test_mismatched_ids_and_sequences_are_rejected() -> None:
    with pytest.raises(ValueError, match="2 ids but 1 sequences"):
        cluster(["a", "b"], ["MKV"], 0.9)
    with pytest.raises(ValueError, match="ids must be unique"):
        cluster(["a", "a"], ["MKV", "MKV"], 0.9)
    with pytest.raises(ValueError, match="record 'b' has an empty sequence"):
        search(["a", "b"], ["MKV", ""], ["t"], ["MKV"])


# --- the binary, end to end --------------------------------------------------------------------------------

N_REAL = 20


def _mutate(seq: str, window: int, changed: int) -> str:
    """Replace the first `changed` residues of every `window` (A <-> G, anything else -> A), so that
    about changed/window of them differ and runs of identical residues remain for mmseqs's k-mer
    prefilter (which a mutation at every other residue would defeat)."""
    return "".join(("G" if c == "A" else "A") if i % window < changed else c for i, c in enumerate(seq))


@pytest.fixture(scope="module")
def real() -> tuple[list[str], list[str]]:
    """20 real proteins (cut to 300 residues to keep mmseqs quick) plus a 96%-identical copy of the first
    and a 60%-identical copy of the second."""
    records = sample_records(N_REAL, max_residues=300)
    ids = [r.id for r in records] + ["close_copy", "far_copy"]
    seqs = [r.sequence for r in records] + [
        _mutate(records[0].sequence, 25, 1),
        _mutate(records[1].sequence, 20, 8),
    ]
    return ids, seqs


@pytest.fixture(scope="module")
def clustered(real, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[float, dict[str, str]], Path]:
    """cluster_levels at 30% and 90% (its first step is `cluster` at 90% over all proteins), and the
    workdir it was given. One run serves the tests below: each mmseqs call costs seconds."""
    ids, seqs = real
    workdir = tmp_path_factory.mktemp("mmseqs")
    return cluster_levels(ids, seqs, (0.3, 0.9), threads=1, workdir=workdir), workdir


def test_cluster_puts_a_mutated_copy_with_its_original_and_nothing_else(real, clustered) -> None:
    ids, seqs = real
    levels, workdir = clustered
    assert sum(a != b for a, b in zip(seqs[0], seqs[-2], strict=True)) / len(seqs[0]) == pytest.approx(
        0.04, abs=0.01
    )
    clusters = levels[0.9]
    assert set(clusters) == set(ids)
    assert clusters["close_copy"] == clusters[ids[0]]
    # The 20 sample proteins are unrelated: each is alone (with its close copy for the first).
    assert len({clusters[i] for i in ids[:N_REAL]}) == N_REAL
    assert clusters["far_copy"] != clusters[ids[1]]  # about 60% identical: apart at 90%
    assert all(clusters[clusters[i]] == clusters[i] for i in ids)  # a representative represents itself
    assert list(workdir.iterdir()) == []  # temporary files removed


def test_cluster_levels_are_nested_and_complete(real, clustered) -> None:
    ids, _ = real
    levels, _ = clustered
    assert list(levels) == [0.3, 0.9]
    for clusters in levels.values():
        assert set(clusters) == set(ids)
    for a in ids:
        for b in ids:
            if levels[0.9][a] == levels[0.9][b]:
                assert levels[0.3][a] == levels[0.3][b]
    assert levels[0.3]["far_copy"] == levels[0.3][ids[1]]  # about 60% identical: together at 30%
    assert len(set(levels[0.3].values())) >= N_REAL - 2  # the unrelated sample proteins stay apart


def test_search_finds_the_copies_first(real) -> None:
    ids, seqs = real
    hits = search(ids[:N_REAL], seqs[:N_REAL], ids, seqs, max_hits=2, threads=1)
    assert all(isinstance(h, Hit) and 0 <= h.identity <= 1 for h in hits)
    by_query: dict[str, list[Hit]] = {}
    for hit in hits:
        by_query.setdefault(hit.query, []).append(hit)
    assert list(by_query) == [i for i in ids[:N_REAL] if i in by_query]  # query order
    assert all(len(found) <= 2 for found in by_query.values())
    for found in by_query.values():
        assert [h.bits for h in found] == sorted((h.bits for h in found), reverse=True)
    first = by_query[ids[0]]
    assert {h.target for h in first} == {ids[0], "close_copy"}
    assert first[0].target == ids[0] and first[0].identity == 1.0
    assert first[1].identity == pytest.approx(0.96, abs=0.015)
    assert "far_copy" in {h.target for h in by_query[ids[1]]}
    unrelated = [h for h in hits if h.query != h.target and {h.query, h.target} & {ids[0], ids[1]} == set()]
    assert all(h.identity < 0.9 for h in unrelated)


def test_search_rows_apply_identity_and_coverage_of_both_sequences(real) -> None:
    ids, seqs = real
    half = seqs[1][: len(seqs[1]) // 2]  # covers half of protein 1: out at coverage 0.8
    queries = [seqs[0], seqs[1], half]
    rows = search_rows(queries, seqs, min_seq_id=0.9, coverage=0.8, threads=1)
    found = {(q, ids[t]) for q, t, *_ in rows}
    assert found == {(0, ids[0]), (0, "close_copy"), (1, ids[1])}  # far_copy is ~60%: below 0.9
    assert all(identity >= 0.9 for _, _, identity, _, _ in rows)
    loose = {(q, ids[t]) for q, t, *_ in search_rows(queries, seqs, threads=1)}
    assert (1, "far_copy") in loose and (2, ids[1]) in loose  # no filters: local hits count
    with pytest.raises(ValueError, match="coverage must be in 0..1"):
        search_rows(queries, seqs, coverage=80)


def test_linear_clustering_keeps_the_close_copy_with_its_original(real) -> None:
    ids, seqs = real
    clusters = cluster(ids, seqs, 0.9, threads=1, linear=True)
    assert set(clusters) == set(ids)
    assert clusters["close_copy"] == clusters[ids[0]]
    assert len({clusters[i] for i in ids[:N_REAL]}) == N_REAL
