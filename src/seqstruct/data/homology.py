"""Sequence homology with MMseqs2: clustering at identity thresholds and all-against-all style search.

A thin wrapper of the `mmseqs` binary (Debian's mmseqs2; `apt-get install -y mmseqs2`) so that splits can
be made by homology, as TAPE's remote-homology task holds out whole folds: a test protein that shares a
30%-identity cluster with no training protein is a "remote" one, the harder and more honest test.

Records go to mmseqs under their index ("0", "1", ...) as the FASTA header, never under their own id, so
an id with spaces or odd characters cannot be cut short by mmseqs's first-word rule; the parsers below map
indices back. Parsing is kept in small pure functions (tested on canned text); the functions that run the
binary work in a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

INSTALL_HINT = "install MMseqs2 (apt-get install -y mmseqs2) or put `mmseqs` on PATH"
DEFAULT_LEVELS = (0.3, 0.5, 0.9)
SEARCH_FORMAT = "query,target,fident,evalue,bits"  # the columns `parse_search_tsv` reads, in order
_PREFILTER_MIN = 300  # mmseqs's default --max-seqs; fewer prefilter hits would lose sensitivity
_STDERR_TAIL = 2000  # characters of mmseqs's output quoted in an error
# easy-cluster's cascade (three prefilter steps of rising sensitivity) saves time on large inputs, but each
# step costs a fixed ~4 s (building a ~0.9 GB k-mer index) however few the sequences. Up to this many, one
# step at the final sensitivity is used instead: faster (measured on 20,000 Swiss-Prot proteins at 30%:
# 67 s against 85 s on 2 cores), with the same criteria and a near-identical result (7,045 clusters
# against 7,106: the single step at full sensitivity merges slightly more).
SINGLE_STEP_MAX = 20_000


@dataclass(frozen=True)
class Hit:
    """One alignment of `mmseqs easy-search`."""

    query: str
    target: str
    identity: float  # fraction of identical aligned residues, 0..1 (mmseqs `fident`)
    evalue: float
    bits: float


def require_mmseqs() -> str:
    """The path of the `mmseqs` executable; FileNotFoundError saying how to install it when absent."""
    path = shutil.which("mmseqs")
    if path is None:
        raise FileNotFoundError(f"`mmseqs` not found on PATH: {INSTALL_HINT}")
    return path


def mmseqs_version() -> str:
    """`mmseqs version` (e.g. 14-7e284+ds-1+b2), for provenance in dataset cards."""
    result = subprocess.run([require_mmseqs(), "version"], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else "unknown (mmseqs version failed)"


# ---------------------------------------------------------------------------------------------------
# Parsing (pure)
# ---------------------------------------------------------------------------------------------------


def _index(token: str, n_records: int, source: str, line_number: int) -> int:
    """A record index as written in the FASTA headers, checked against the number of records."""
    if not token.isdigit() or int(token) >= n_records:
        raise ValueError(
            f"{source}, line {line_number}: {token!r} is not a record index below {n_records} "
            "(the headers this module writes)"
        )
    return int(token)


def _tsv_rows(
    lines: Iterable[str], width: int, source: str, expected: str
) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank line of mmseqs' tab-separated output, every one `width`
    fields wide; a line that is not says which, and what was `expected`."""
    for line_number, line in enumerate(lines, start=1):
        text = line.rstrip("\r\n")
        if not text:
            continue
        columns = text.split("\t")
        if len(columns) != width:
            raise ValueError(f"{source}, line {line_number}: expected {expected}, got {text!r}")
        yield line_number, columns


def parse_cluster_tsv(lines: Iterable[str], n_records: int, source: str = "cluster.tsv") -> list[int]:
    """Read `mmseqs easy-cluster`'s `*_cluster.tsv` (`representative<TAB>member`, one line per member,
    indices as names) into [n_records] representative indices. Every record must appear exactly once."""
    representative = [-1] * n_records
    for line_number, columns in _tsv_rows(lines, 2, source, "'representative<TAB>member'"):
        rep = _index(columns[0], n_records, source, line_number)
        member = _index(columns[1], n_records, source, line_number)
        if representative[member] != -1:
            raise ValueError(f"{source}, line {line_number}: record {member} is in two clusters")
        representative[member] = rep
    missing = [i for i, rep in enumerate(representative) if rep == -1]
    if missing:
        raise ValueError(f"{source}: {len(missing)} records have no cluster (first: {missing[:5]})")
    return representative


def parse_search_tsv(
    lines: Iterable[str], n_queries: int, n_targets: int, source: str = "hits.tsv"
) -> list[tuple[int, int, float, float, float]]:
    """Read `mmseqs easy-search --format-output query,target,fident,evalue,bits` lines into
    (query index, target index, identity, evalue, bits) tuples, in file order."""
    rows: list[tuple[int, int, float, float, float]] = []
    for line_number, columns in _tsv_rows(lines, 5, source, f"5 columns ({SEARCH_FORMAT})"):
        query = _index(columns[0], n_queries, source, line_number)
        target = _index(columns[1], n_targets, source, line_number)
        try:
            identity, evalue, bits = float(columns[2]), float(columns[3]), float(columns[4])
        except ValueError:
            text = "\t".join(columns)  # the line as read, for the message
            raise ValueError(
                f"{source}, line {line_number}: fident, evalue and bits must be numbers: {text!r}"
            ) from None
        if not 0.0 <= identity <= 1.0:
            raise ValueError(f"{source}, line {line_number}: fident {identity} is outside 0..1")
        rows.append((query, target, identity, evalue, bits))
    return rows


def best_hits(
    rows: Iterable[tuple[int, int, float, float, float]], max_hits: int
) -> list[tuple[int, int, float, float, float]]:
    """Per query, the `max_hits` rows with the highest bit score (ties: lower evalue, then target index);
    queries in index order."""
    by_query: dict[int, list[tuple[int, int, float, float, float]]] = {}
    for row in rows:
        by_query.setdefault(row[0], []).append(row)
    out: list[tuple[int, int, float, float, float]] = []
    for query in sorted(by_query):
        ranked = sorted(by_query[query], key=lambda row: (-row[4], row[3], row[1]))
        out.extend(ranked[:max_hits])
    return out


# ---------------------------------------------------------------------------------------------------
# Running mmseqs
# ---------------------------------------------------------------------------------------------------


def _check_records(ids: Sequence[str], sequences: Sequence[str], what: str) -> None:
    if len(ids) != len(sequences):
        raise ValueError(f"{what}: {len(ids)} ids but {len(sequences)} sequences")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{what}: ids must be unique")
    for record_id, seq in zip(ids, sequences, strict=True):
        if not seq:
            raise ValueError(f"{what}: record {record_id!r} has an empty sequence")


def _write_indexed_fasta(sequences: Sequence[str], path: Path) -> None:
    """FASTA with headers `>0`, `>1`, ... (one line per sequence: mmseqs does not need wrapping)."""
    with open(path, "w", encoding="ascii") as handle:
        for i, seq in enumerate(sequences):
            handle.write(f">{i}\n{seq}\n")


@contextmanager
def _scratch(workdir: Path | None) -> Iterator[Path]:
    """A temporary directory (under `workdir` when given), removed afterwards."""
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="seqstruct-mmseqs-", dir=workdir) as tmp:
        yield Path(tmp)


def _run(args: list[str]) -> None:
    command = [require_mmseqs(), *args]
    logger.debug("running %s", " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-_STDERR_TAIL:]
        raise RuntimeError(f"mmseqs failed (exit {result.returncode}): {' '.join(command)}\n{tail}")


def _threads(threads: int | None) -> list[str]:
    return [] if threads is None else ["--threads", str(threads)]


def cluster(
    ids: Sequence[str],
    sequences: Sequence[str],
    min_seq_id: float,
    coverage: float = 0.8,
    threads: int | None = None,
    workdir: Path | None = None,
    linear: bool = False,
) -> dict[str, str]:
    """Cluster proteins with `mmseqs easy-cluster` at `min_seq_id` identity and `coverage` of both
    sequences (--cov-mode 0); return id -> the id of its cluster's representative (itself for a
    representative). `workdir` holds the temporary files (default: the system's temporary directory).

    Up to SINGLE_STEP_MAX proteins the clustering runs in one prefilter step (`--cluster-steps 1`),
    above it in mmseqs's default cascade; both apply the same identity and coverage criteria.
    `linear` runs `mmseqs easy-linclust` instead: the same criteria, time linear in the number of
    proteins (minutes for all of Swiss-Prot on 2 cores), at the price of some sensitivity (it compares a
    protein only with those sharing one of its selected k-mers, so more clusters than easy-cluster)."""
    _check_records(ids, sequences, "cluster")
    if not 0.0 <= min_seq_id <= 1.0 or not 0.0 <= coverage <= 1.0:
        raise ValueError(f"min_seq_id and coverage must be in 0..1, got {min_seq_id} and {coverage}")
    if not ids:
        return {}
    with _scratch(workdir) as tmp:
        fasta = tmp / "in.fasta"
        _write_indexed_fasta(sequences, fasta)
        single_step = not linear and len(ids) <= SINGLE_STEP_MAX
        _run(
            ["easy-linclust" if linear else "easy-cluster", str(fasta), str(tmp / "out"), str(tmp / "tmp")]
            + ["--min-seq-id", str(min_seq_id), "-c", str(coverage), "--cov-mode", "0", "-v", "1"]
            + (["--cluster-steps", "1"] if single_step else [])
            + _threads(threads)
        )
        tsv = tmp / "out_cluster.tsv"
        with open(tsv, encoding="ascii") as handle:
            representative = parse_cluster_tsv(handle, len(ids), str(tsv))
    n_clusters = len(set(representative))
    logger.info(
        "mmseqs%s: %d proteins in %d clusters at %.0f%% identity",
        " (linclust)" if linear else "",
        len(ids),
        n_clusters,
        100 * min_seq_id,
    )
    return {ids[i]: ids[rep] for i, rep in enumerate(representative)}


def cluster_levels(
    ids: Sequence[str],
    sequences: Sequence[str],
    levels: Sequence[float] = DEFAULT_LEVELS,
    coverage: float = 0.8,
    threads: int | None = None,
    workdir: Path | None = None,
) -> dict[float, dict[str, str]]:
    """Clusters at several identity levels: level -> (id -> representative id), every id at every level.

    Cascaded, as UniRef50 is built from UniRef90: the proteins are clustered at the highest level, then
    only that level's representatives are clustered at the next lower one, and so on; a protein's cluster
    at a lower level is that of its representative. Each step is smaller than the last (the 30% step sees
    the 50% representatives, not every protein), which is what makes the whole of Swiss-Prot tractable;
    the price is the usual one of cascades (a member is tied to its representative's lower-level cluster
    even where it alone would have been placed elsewhere). Levels are nested by construction: two proteins
    together at 90% are together at 50% and 30%.
    """
    ordered = sorted(set(levels), reverse=True)
    if not ordered:
        raise ValueError("cluster_levels needs at least one level")
    sequence_of = dict(zip(ids, sequences, strict=True))
    result: dict[float, dict[str, str]] = {}
    current = {record_id: record_id for record_id in ids}  # id -> representative at the previous level
    for level in ordered:
        reps = sorted(set(current.values()))
        step = cluster(reps, [sequence_of[r] for r in reps], level, coverage, threads, workdir)
        current = {record_id: step[rep] for record_id, rep in current.items()}
        result[level] = current
    return {level: result[level] for level in levels}


def search(
    query_ids: Sequence[str],
    query_seqs: Sequence[str],
    target_ids: Sequence[str],
    target_seqs: Sequence[str],
    max_hits: int = 10,
    sensitivity: float = 7.5,
    threads: int | None = None,
    workdir: Path | None = None,
) -> list[Hit]:
    """Search queries against targets with `mmseqs easy-search -s sensitivity`; per query (in query
    order) at most `max_hits` hits, by bit score descending. A query that is also a target finds itself."""
    _check_records(query_ids, query_seqs, "search queries")
    _check_records(target_ids, target_seqs, "search targets")
    if max_hits < 1:
        raise ValueError(f"max_hits must be at least 1, got {max_hits}")
    rows = search_rows(
        query_seqs,
        target_seqs,
        sensitivity=sensitivity,
        max_seqs=max(max_hits, _PREFILTER_MIN),
        threads=threads,
        workdir=workdir,
    )
    return [
        Hit(query_ids[q], target_ids[t], identity, evalue, bits)
        for q, t, identity, evalue, bits in best_hits(rows, max_hits)
    ]


def search_rows(
    query_seqs: Sequence[str],
    target_seqs: Sequence[str],
    *,
    sensitivity: float = 7.5,
    max_seqs: int = _PREFILTER_MIN,
    min_seq_id: float = 0.0,
    coverage: float = 0.0,
    evalue: float = 1e-3,
    threads: int | None = None,
    workdir: Path | None = None,
) -> list[tuple[int, int, float, float, float]]:
    """Every alignment `mmseqs easy-search` reports, as (query index, target index, identity, evalue,
    bits) in file order: for callers that need all of a query's hits (who is near X?) or their best
    identity rather than the best few by score.

    `max_seqs` bounds the targets a query passes on from the prefilter to alignment, so it also bounds
    its hits. `min_seq_id` and `coverage` (of both sequences, --cov-mode 0) filter alignments with the
    criteria `cluster` uses; 0 leaves them off. `evalue` is mmseqs's cut (-e, default 1e-3); E-values
    grow with the number of targets, so a search meant to find every alignment that meets identity and
    coverage criteria in a large target set needs a looser one.
    """
    if not 0.0 <= min_seq_id <= 1.0 or not 0.0 <= coverage <= 1.0:
        raise ValueError(f"min_seq_id and coverage must be in 0..1, got {min_seq_id} and {coverage}")
    if max_seqs < 1 or evalue <= 0:
        raise ValueError(f"max_seqs must be at least 1 and evalue positive, got {max_seqs} and {evalue}")
    if not query_seqs or not target_seqs:
        return []
    with _scratch(workdir) as tmp:
        query, target, out = tmp / "query.fasta", tmp / "target.fasta", tmp / "hits.tsv"
        _write_indexed_fasta(query_seqs, query)
        _write_indexed_fasta(target_seqs, target)
        _run(
            ["easy-search", str(query), str(target), str(out), str(tmp / "tmp")]
            + ["--format-output", SEARCH_FORMAT, "-s", str(sensitivity), "--max-seqs", str(max_seqs)]
            + ["--min-seq-id", str(min_seq_id), "-c", str(coverage), "--cov-mode", "0", "-e", str(evalue)]
            + ["-v", "1"]
            + _threads(threads)
        )
        with open(out, encoding="ascii") as handle:
            return parse_search_tsv(handle, len(query_seqs), len(target_seqs), str(out))
