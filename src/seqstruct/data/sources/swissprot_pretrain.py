"""The `swissprot-pretrain` recipe: a Swiss-Prot corpus for masked-LM pretraining that leaks no evaluation
protein.

    seqstruct data prepare swissprot-pretrain exclude=[data/prepared/swissprot-go-20k] [shards=3] [threads=2]

A model pretrained on the proteins it is later tested on has seen the answers; one pretrained on their close
homologues has seen most of them. So the corpus is all of Swiss-Prot 2014-01 (Debian's metastudent-data,
read as the `swissprot-go` recipe reads it) less every protein of an evaluation split of the `exclude`d
prepared datasets, less every protein within test_remote's homology reach, redundancy-reduced UniRef50-style
into gzipped FASTA shards. The rule, the counts and a leakage audit go into the card (`_METHOD`).

The output is a prepared dataset (`train` = shard 0, `valid` = held-out clusters) with, beside it:

    shard-000.fasta.gz   one protein per 50% cluster, the cluster's representative (= the train split)
    shard-001.fasta.gz   one seeded random member per cluster, a different draw per shard (UniRef50-style
    ...                  sampling), so a long run can continue on fresh sequences under the same exclusions
    audit.json           per evaluation split: each protein's best identity to shard 0, summarised

Shards are deterministic (gzip with mtime 0 and no file name) and at most MAX_SHARD_BYTES each.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seqstruct.data import homology, leakage
from seqstruct.data.leakage import EVAL_SPLITS, EvalSet, eval_members, read_eval_sets
from seqstruct.data.prepared import (
    TRAIN,
    DatasetInfo,
    Prepared,
    register_recipe,
    write_prepared,
)
from seqstruct.data.sources import metastudent
from seqstruct.data.sources.swissprot_proteins import (
    LICENCE,
    Proteins,
    package_version,
    read_metastudent,
    select_proteins,
)
from seqstruct.io import atomic_open

if TYPE_CHECKING:  # imported where used: `seqstruct data list` reads the recipes without datasets
    from datasets import Dataset

logger = logging.getLogger(__name__)

NAME = "swissprot-pretrain"
REMOTE = "test_remote"
VALID = "valid"
MAX_SHARD_BYTES = 40 * 2**20  # what one file may weigh to travel to a GPU machine
SHARD_NAME = "shard-{:03d}.fasta.gz"
AUDIT_FILE = "audit.json"
FASTA_WIDTH = 60
# Prefilter hits a protein may pass to alignment in a search for its neighbours (test_remote's, valid's). mmseqs's
# default 300 would silently cap a large family's exclusion at 300 members: for the 2,990 test_remote
# proteins of swissprot-go-20k and the demo sample against Swiss-Prot, the prefilter passed up to 1,535
# (median about 600) and up to 1,065 met the criteria.
NEIGHBOUR_MAX_SEQS = 5000
# The E-value cut of those searches. E-values grow with the target set, so mmseqs's default 1e-3 against
# all of Swiss-Prot (500k proteins) is 4x stricter than against shard 0 (130k) and 25x stricter than
# against the 20k proteins the test_remote clusters were made in. Measured: 28 test_remote-shard 0 pairs
# met 30% identity and 80% coverage with E between 3e-4 and 1e-3 against shard 0, every one of them cut
# at 1e-3 against Swiss-Prot. Identity and coverage are the criteria; the E-value only keeps out chance.
NEIGHBOUR_EVALUE = 0.1

_METHOD = """\
**Exclusion rule.** Swiss-Prot 2014-01 (the union of metastudent's MFO, BPO and CCO databases), without
proteins that have letters outside the protein alphabet or are longer than `max_length`, less:
(1) every protein of an evaluation split ({splits}) of each `exclude`d dataset, matched by
accession *and* by identical sequence (Swiss-Prot holds identical sequences under several accessions; all
of them go);
(2) every protein with an MMseqs2 alignment of >= {remote:.0%} identity covering >= {coverage:.0%} of both sequences
(`--min-seq-id {remote} -c {coverage} --cov-mode 0`, the criteria of the `swissprot-go` clustering) to any
test_remote protein: one that would join a test_remote {remote:.0%} cluster, so "remote" stays remote from
pretraining. That search runs the test_remote proteins against all remaining Swiss-Prot (`easy-search
-s {sensitivity} --max-seqs {max_seqs} -e {evalue}`; the E-value is looser than mmseqs's default 1e-3, which against
500k targets cuts alignments that meet the criteria). What it misses, the audit below shows.

**Redundancy reduction** (UniRef50-style). The rest is clustered with `mmseqs easy-linclust
--min-seq-id {identity} -c {coverage} --cov-mode 0`. `valid_clusters` whole clusters, drawn at random (seeded),
are held out: their representatives are the `valid` split (perplexity on clusters unseen in pretraining)
and none of their members is in any shard. Linclust compares only proteins that share a selected k-mer,
so it leaves some >= {identity:.0%} relatives in separate clusters: a search of the valid proteins against
the rest at the same criteria (`-s {sensitivity} -e {evalue}`) finds them, and their whole clusters are held out
too (in no shard, not in `valid`). For the same reason shard 0 is not strictly non-redundant at
{identity:.0%}. Shard 0 (`shard-000.fasta.gz`, the `train` split) holds every other cluster's representative;
shard k >= 1 one member per cluster drawn at random (seeded, a different draw per shard; a singleton
cluster gives its one protein to every shard). Each shard is capped by `max_proteins`/`max_residues`
(whole clusters in one seeded order, the same for every shard) and must stay under {max_mib:.0f} MiB.

**Leakage audit.** Each evaluation protein is searched against shard 0 (`easy-search -s {sensitivity}`,
alignments covering >= {coverage:.0%} of both sequences, mmseqs's default E-value 1e-3); its best identity is
that of its highest-identity alignment, 0 when it has none. By construction valid and test_close
proteins have close homologues in their dataset's train split, so many have high-identity hits here too
(that is what the audit measures); test_remote proteins should have none at >= {remote:.0%}, up to search
sensitivity. The audit is against shard 0 only; shards >= 1 hold other members of the same clusters.
"""


# ---------------------------------------------------------------------------------------------------
# Pure steps
# ---------------------------------------------------------------------------------------------------


def hold_out(reps: Iterable[str], n_clusters: int, seed: int) -> set[str]:
    """A seeded choice of `n_clusters` cluster representatives (all of them if there are fewer)."""
    ordered = sorted(set(reps))
    if n_clusters >= len(ordered):
        return set(ordered)
    picks = np.random.default_rng([seed, 0]).permutation(len(ordered))[:n_clusters]
    return {ordered[k] for k in picks.tolist()}


def draw_shards(
    members: Mapping[str, Sequence[str]],
    n_shards: int,
    seed: int,
    lengths: Mapping[str, int],
    max_proteins: int = 0,
    max_residues: int = 0,
) -> list[list[str]]:
    """Shard 0: every cluster's representative (the key of `members`); shard k >= 1: one member per
    cluster, drawn with a generator seeded by (seed, k). Each shard takes whole clusters in one seeded
    order until `max_proteins` or `max_residues` (0: no cap) would be passed. Ids sorted within a shard."""
    reps = sorted(members)
    order = np.random.default_rng([seed, 1]).permutation(len(reps))  # the cap's order, shared by all
    shards: list[list[str]] = []
    for k in range(n_shards):
        if k == 0:
            pick = reps
        else:
            rng = np.random.default_rng([seed, 2, k])
            sizes = np.array([len(members[r]) for r in reps])
            draws = (rng.random(len(reps)) * sizes).astype(np.int64)  # [clusters], one uniform index each
            pick = [sorted(members[r])[d] for r, d in zip(reps, draws.tolist(), strict=True)]
        kept: list[str] = []
        residues = 0
        for index in order.tolist():
            protein = pick[index]
            if max_proteins and len(kept) >= max_proteins:
                break
            if max_residues and residues + lengths[protein] > max_residues:
                break
            kept.append(protein)
            residues += lengths[protein]
        shards.append(sorted(kept))
    return shards


def fasta_gz(ids: Sequence[str], sequences: Mapping[str, str]) -> bytes:
    """Gzipped FASTA (60 residues a line) with mtime 0 and no file name: the same bytes every time."""
    lines: list[str] = []
    for record_id in ids:
        seq = sequences[record_id]
        lines.append(f">{record_id}\n")
        lines.extend(seq[i : i + FASTA_WIDTH] + "\n" for i in range(0, len(seq), FASTA_WIDTH))
    return gzip.compress("".join(lines).encode("ascii"), compresslevel=9, mtime=0)


# ---------------------------------------------------------------------------------------------------
# Steps that run mmseqs
# ---------------------------------------------------------------------------------------------------


def neighbours(
    queries: Sequence[str],
    ids: Sequence[str],
    sequences: Mapping[str, str],
    min_seq_id: float,
    coverage: float,
    sensitivity: float,
    threads: int | None,
) -> set[str]:
    """Accessions among `ids` with an alignment to one of the `queries` (sequences) at >= min_seq_id over
    >= coverage of both. The few (test_remote or valid proteins) are the queries, all Swiss-Prot the targets: mmseqs's prefilter cost grows with the queries, so
    2,990 of them against all of Swiss-Prot took about 5 minutes on 2 cores (-s 7.5), where 50,000
    Swiss-Prot queries against them had not finished their prefilter in 10 (the reverse: hours)."""
    rows = homology.search_rows(
        queries,
        [sequences[i] for i in ids],
        sensitivity=sensitivity,
        max_seqs=NEIGHBOUR_MAX_SEQS,
        evalue=NEIGHBOUR_EVALUE,
        min_seq_id=min_seq_id,
        coverage=coverage,
        threads=threads,
    )
    return {ids[target] for _, target, _, _, _ in rows}


# ---------------------------------------------------------------------------------------------------
# The recipe
# ---------------------------------------------------------------------------------------------------


def _check_options(options: Mapping[str, Any]) -> None:
    for key in ("shards", "valid_clusters", "max_length", "max_proteins", "max_residues"):
        if options[key] < 0:
            raise ValueError(f"{key} must be >= 0, got {options[key]}")
    if options["shards"] < 1:
        raise ValueError(f"shards must be at least 1 (shard 0 is the train split), got {options['shards']}")
    for key in ("identity", "coverage", "remote_identity"):
        if not 0 < options[key] <= 1:
            raise ValueError(f"{key} must be in (0, 1], got {options[key]}")


def _provenance(root: Path, eval_sets: Sequence[EvalSet]) -> str:
    version = package_version()
    package = f"Debian package metastudent-data {version}" if version else "metastudent-data"
    datasets = sorted({part.dataset for part in eval_sets})
    return (
        f"{package} (dataset_201401): {root}/{{MFO,BPO,CCO}}/goasp.fasta.{{pin,phr,psq}}, UniProtKB/Swiss-Prot "
        f"2014-01 sequences as packaged by metastudent. Excluded evaluation datasets: "
        f"{', '.join(datasets) if datasets else '(none)'}. MMseqs2 {homology.mmseqs_version()}."
    )


@dataclass
class _Corpus:
    """What the steps of the recipe hand on: the sequences read, the clusters, the shards and the counts."""

    sequences: dict[str, str]  # accession -> sequence, every protein read (eval proteins' included)
    counts: dict[str, Any] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)  # representative -> its cluster
    valid: list[str] = field(default_factory=list)  # held-out clusters' representatives, sorted
    shards: list[list[str]] = field(default_factory=list)
    blobs: list[bytes] = field(default_factory=list)  # each shard as gzipped FASTA


def _exclude(
    corpus: _Corpus,
    proteins: Proteins,
    eval_sets: Sequence[EvalSet],
    max_length: int,
    remote_identity: float,
    coverage: float,
    sensitivity: float,
    threads: int | None,
) -> list[str]:
    """The accessions left once evaluation proteins, odd letters, long proteins and test_remote's
    neighbours are out (in that order, each counted)."""
    excluded, eval_counts = eval_members(corpus.sequences, eval_sets)
    corpus.counts.update(eval_counts)
    corpus.counts["excluded: evaluation-split proteins (all datasets, by accession or sequence)"] = len(
        excluded
    )
    proteins.sequences = {a: s for a, s in corpus.sequences.items() if a not in excluded}
    ids = select_proteins(proteins, max_length, 0, 0)  # the protein alphabet and max_length; counts its drops
    corpus.counts.update({key: value for key, value in proteins.counts.items() if key not in corpus.counts})
    remote = sorted({s for part in eval_sets if part.split == REMOTE for s in part.sequences})
    near = neighbours(remote, ids, corpus.sequences, remote_identity, coverage, sensitivity, threads)
    key = (
        f"excluded: test_remote {remote_identity:.0%}-cluster members "
        f"(hit >= {remote_identity:.0%}, coverage >= {coverage:.0%})"
    )
    corpus.counts[key] = len(near)
    ids = [i for i in ids if i not in near]
    corpus.counts["proteins left to cluster"] = len(ids)
    return ids


def _cluster_and_shard(corpus: _Corpus, ids: Sequence[str], output: Path, options: Mapping[str, Any]) -> None:
    """Cluster `ids`, hold out `valid_clusters` clusters, draw the shards and check their size."""
    sequences = corpus.sequences
    clusters = homology.cluster(
        ids,
        [sequences[i] for i in ids],
        options["identity"],
        options["coverage"],
        options["threads"],
        linear=True,
    )
    for protein, rep in clusters.items():
        corpus.members.setdefault(rep, []).append(protein)
    n_valid = options["valid_clusters"]
    if n_valid >= len(corpus.members):
        raise ValueError(
            f"valid_clusters={n_valid} would hold out all {len(corpus.members)} clusters and leave shard 0 "
            "empty; lower it"
        )
    held = hold_out(corpus.members, n_valid, options["seed"])
    corpus.valid = sorted(held)
    # Linclust under-merges (it compares only proteins that share a selected k-mer): a search finds the
    # clusters it kept apart from a valid protein at the same criteria, and they are held out too.
    rest = [p for rep, group in corpus.members.items() if rep not in held for p in group]
    near = neighbours(
        [sequences[v] for v in corpus.valid],
        rest,
        sequences,
        options["identity"],
        options["coverage"],
        options["sensitivity"],
        options["threads"],
    )
    joined = {clusters[p] for p in near}
    counts = corpus.counts
    counts[f"clusters at {options['identity']:.0%} (linclust)"] = len(corpus.members)
    counts["clusters with one member"] = sum(1 for m in corpus.members.values() if len(m) == 1)
    counts["held out: clusters (valid = their representatives)"] = len(held)
    counts[
        f"held out: other clusters with a member >= {options['identity']:.0%} identical to a valid protein"
    ] = len(joined)
    out = held | joined
    counts["held out: proteins in all those clusters (in no shard)"] = sum(
        len(corpus.members[r]) for r in out
    )
    kept = {rep: group for rep, group in corpus.members.items() if rep not in out}
    lengths = {i: len(sequences[i]) for i in ids}
    corpus.shards = draw_shards(
        kept, options["shards"], options["seed"], lengths, options["max_proteins"], options["max_residues"]
    )
    corpus.blobs = [fasta_gz(shard, sequences) for shard in corpus.shards]
    for k, (shard, blob) in enumerate(zip(corpus.shards, corpus.blobs, strict=True)):
        name = SHARD_NAME.format(k)
        residues = sum(lengths[i] for i in shard)
        if len(blob) > MAX_SHARD_BYTES:
            raise ValueError(
                f"{output / name} would be {len(blob) / 2**20:.1f} MiB, over the {MAX_SHARD_BYTES / 2**20:.0f} "
                f"MiB a shard may weigh; cap it with max_residues= (it holds {residues:,} residues) or "
                "max_proteins="
            )
        counts[f"{name}: proteins"] = len(shard)
        counts[f"{name}: residues"] = residues
        counts[f"{name}: MiB"] = round(len(blob) / 2**20, 2)
    if options["max_proteins"] or options["max_residues"]:
        counts["clusters left out of shard 0 by max_proteins/max_residues"] = len(kept) - len(
            corpus.shards[0]
        )


def _split(corpus: _Corpus, chosen: Sequence[str]) -> Dataset:
    from datasets import Dataset, Features, Value

    size = {p: len(group) for group in corpus.members.values() for p in group}
    features = Features(
        {
            "id": Value("string"),
            "text": Value("string"),
            "length": Value("int32"),
            "cluster_size": Value("int32"),
        }
    )
    return Dataset.from_dict(
        {
            "id": list(chosen),
            "text": [corpus.sequences[i] for i in chosen],
            "length": [len(corpus.sequences[i]) for i in chosen],
            "cluster_size": [size[i] for i in chosen],
        },
        features,
    )


@register_recipe(NAME)
def prepare_swissprot_pretrain(
    output: Path,
    overwrite: bool = False,
    *,
    exclude: tuple[str, ...] = (),
    root: str = str(metastudent.METASTUDENT_DIR),
    shards: int = 3,
    identity: float = 0.5,
    coverage: float = 0.8,
    remote_identity: float = 0.3,
    valid_clusters: int = 1000,
    max_length: int = 10_000,
    max_proteins: int = 0,
    max_residues: int = 0,
    sensitivity: float = 7.5,
    audit: bool = True,
    seed: int = 0,
    threads: int | None = None,
) -> Prepared:
    """Swiss-Prot less the `exclude`d datasets' evaluation proteins and test_remote's 30% neighbours, as
    `shards` gzipped FASTA shards of one protein per 50% cluster, with a leakage audit in the card."""
    exclude = (exclude,) if isinstance(exclude, str) else tuple(dict.fromkeys(str(path) for path in exclude))
    config = {
        "exclude": list(exclude), "root": str(root), "shards": shards, "identity": identity,
        "coverage": coverage, "remote_identity": remote_identity, "valid_clusters": valid_clusters,
        "max_length": max_length, "max_proteins": max_proteins, "max_residues": max_residues,
        "sensitivity": sensitivity, "audit": audit, "seed": seed, "threads": threads,
    }  # fmt: skip
    _check_options(config)
    if not exclude:
        logger.warning("%s: nothing to exclude; the corpus will hold every evaluation protein", NAME)
    eval_sets = read_eval_sets(exclude)  # a bad path fails here, before minutes of reading
    homology.require_mmseqs()
    start = time.perf_counter()
    proteins = read_metastudent(Path(root))
    del proteins.labels, proteins.propagations  # labels are not needed for MLM
    corpus = _Corpus(proteins.sequences, dict(proteins.counts))
    ids = _exclude(corpus, proteins, eval_sets, max_length, remote_identity, coverage, sensitivity, threads)
    logger.info(
        "%d proteins left after exclusions (%.0f s); clustering", len(ids), time.perf_counter() - start
    )
    _cluster_and_shard(corpus, ids, output, config)

    report: dict[str, dict[str, Any]] = {}
    if audit:
        queries = {part.label: part.sequences for part in eval_sets}
        queries[f"{NAME} (this dataset) {VALID}"] = tuple(corpus.sequences[i] for i in corpus.valid)
        shard0 = [corpus.sequences[i] for i in corpus.shards[0]]
        report = leakage.audit(queries, shard0, coverage, sensitivity, threads)

    info = DatasetInfo(
        name=NAME,
        kind="protein",
        recipe=NAME,
        config=config,
        columns={
            "length": "sequence length (residues)",
            "cluster_size": f"proteins in the protein's {identity:.0%} cluster (after the exclusions)",
        },
        source=_provenance(Path(root), eval_sets),
        licence=LICENCE,
        counts=corpus.counts,
    )
    method = _METHOD.format(
        splits=", ".join(EVAL_SPLITS), remote=remote_identity, coverage=coverage, sensitivity=sensitivity,
        evalue=NEIGHBOUR_EVALUE, max_seqs=NEIGHBOUR_MAX_SEQS, identity=identity, max_mib=MAX_SHARD_BYTES / 2**20,
    )  # fmt: skip
    if report:
        method += f"\n**Audit** (best identity of each evaluation protein to shard 0):\n\n{leakage.audit_table(report)}\n"

    def write_extra(directory: Path) -> None:
        for k, blob in enumerate(corpus.blobs):  # already gzipped: written as bytes (atomic_open would gzip)
            (directory / SHARD_NAME.format(k)).write_bytes(blob)
        if report:
            with atomic_open(directory / AUDIT_FILE) as handle:
                json.dump(report, handle, indent=2)
                handle.write("\n")

    splits = {TRAIN: _split(corpus, corpus.shards[0]), VALID: _split(corpus, corpus.valid)}
    prepared = write_prepared(
        output, info, splits, method=method, overwrite=overwrite, write_extra=write_extra
    )
    logger.info("%s: %s in %.1f s", NAME, prepared.info.splits, time.perf_counter() - start)
    return prepared
