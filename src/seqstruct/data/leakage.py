"""Leakage audit: the evaluation proteins of prepared datasets, and how close each comes to a training
set by sequence identity.

An evaluation protein whose near-twin was trained on measures memory, not generalisation. The audit
searches the evaluation proteins against the training proteins with MMseqs2 and reports, per evaluation
set, the distribution of each protein's best identity: the share with no hit, quantiles, and the shares at
or above AUDIT_THRESHOLDS. A protein without a hit counts as identity 0 (below any threshold), so the
quantiles describe every protein, not only those that found something.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from seqstruct.data import homology
from seqstruct.data.prepared import load_prepared

AUDIT_THRESHOLDS = (0.9, 0.5, 0.3)
EVAL_SPLITS = ("valid", "test_close", "test_remote")  # a prepared protein dataset's evaluation splits


@dataclass(frozen=True)
class EvalSet:
    """The proteins of one evaluation split of one excluded dataset."""

    dataset: str  # the directory as given
    split: str
    ids: tuple[str, ...]
    sequences: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.dataset} {self.split}"


def read_eval_sets(paths: Sequence[str]) -> list[EvalSet]:
    """The evaluation splits of each prepared dataset in `paths`; an error names a path that is not a
    prepared protein dataset or has no evaluation split."""
    out: list[EvalSet] = []
    for path in paths:
        try:
            prepared = load_prepared(path)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"exclude: {err}") from None
        if prepared.info.kind != "protein":
            raise ValueError(f"exclude: {path} is a {prepared.info.kind} dataset, not a protein one")
        found = [name for name in EVAL_SPLITS if name in prepared.splits]
        if not found:
            raise ValueError(
                f"exclude: {path} has no evaluation split ({', '.join(EVAL_SPLITS)}); it has {sorted(prepared.splits)}"
            )
        for name in found:
            split = prepared.split(name)
            out.append(EvalSet(str(path), name, tuple(split["id"]), tuple(split["text"])))
    return out


def eval_members(
    sequences: Mapping[str, str], eval_sets: Sequence[EvalSet]
) -> tuple[set[str], dict[str, int]]:
    """Accessions of `sequences` that are an evaluation protein by id or by identical sequence, and the
    card's counts per set (a protein in two sets is counted in both)."""
    by_sequence: dict[str, list[str]] = {}
    for accession, sequence in sequences.items():
        by_sequence.setdefault(sequence, []).append(accession)
    excluded: set[str] = set()
    counts: dict[str, int] = {}
    for part in eval_sets:
        by_id = {i for i in part.ids if i in sequences}
        same = {a for s in part.sequences for a in by_sequence.get(s, ())}
        missing = sum(
            1
            for i, s in zip(part.ids, part.sequences, strict=True)
            if i not in sequences and s not in by_sequence
        )
        counts[f"{part.label}: proteins"] = len(part.ids)
        counts[f"{part.label}: excluded by accession"] = len(by_id)
        counts[f"{part.label}: excluded by identical sequence only (other accessions)"] = len(same - by_id)
        if missing:
            counts[f"{part.label}: not found in Swiss-Prot by accession or sequence"] = missing
        excluded |= by_id | same
    return excluded, counts


def best_identity(rows: Iterable[tuple[int, int, float, float, float]], n_queries: int) -> list[float | None]:
    """Per query index, the highest identity among its alignments (`homology.search_rows` rows); None
    where it has none."""
    best: list[float | None] = [None] * n_queries
    for query, _, identity, _, _ in rows:
        known = best[query]
        if known is None or identity > known:
            best[query] = identity
    return best


def summarise(best: Sequence[float | None]) -> dict[str, Any]:
    """An audit row: n, share with no hit, quantiles of best identity (no hit as 0), shares at or above
    each threshold (keys `>=0.9`, ...)."""
    n = len(best)
    values = np.array([0.0 if b is None else b for b in best])
    row: dict[str, Any] = {"n": n, "no_hit": sum(b is None for b in best) / n if n else 0.0}
    for label, q in (("median", 50), ("p90", 90), ("max", 100)):
        row[label] = float(np.percentile(values, q)) if n else 0.0
    for threshold in AUDIT_THRESHOLDS:
        row[f">={threshold}"] = float((values >= threshold).mean()) if n else 0.0
    return row


def audit(
    queries: Mapping[str, Sequence[str]],
    targets: Sequence[str],
    coverage: float = 0.8,
    sensitivity: float = 7.5,
    threads: int | None = None,
) -> dict[str, dict[str, Any]]:
    """label -> `summarise` of the best identities of that set's sequences to `targets`.

    One search for all distinct query sequences (sets often share proteins); an alignment counts when it
    covers `coverage` of both sequences (--cov-mode 0; 0 for any local alignment)."""
    distinct = sorted({s for sequences in queries.values() for s in sequences})
    rows = homology.search_rows(
        distinct, targets, sensitivity=sensitivity, coverage=coverage, threads=threads
    )
    best = dict(zip(distinct, best_identity(rows, len(distinct)), strict=True))
    return {label: summarise([best[s] for s in sequences]) for label, sequences in queries.items()}


def audit_table(report: Mapping[str, Mapping[str, Any]]) -> str:
    """The audit as a markdown table (shares and identities as percents)."""
    head = ["split", "n", "no hit", "median", "p90", "max", *(f">= {t:.0%}" for t in AUDIT_THRESHOLDS)]
    out = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for label, row in report.items():
        cells = [row["no_hit"], row["median"], row["p90"], row["max"]]
        cells += [row[f">={t}"] for t in AUDIT_THRESHOLDS]
        out.append(f"| {label} | {row['n']:,} | " + " | ".join(f"{100 * c:.1f}%" for c in cells) + " |")
    return "\n".join(out)
