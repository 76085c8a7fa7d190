"""The `swissprot-go` recipe: Swiss-Prot 2014-01 proteins with GO labels, split by sequence homology.

    seqstruct data prepare swissprot-go [max_proteins=20000] [threads=8] [seed=0] ...
    seqstruct data prepare swissprot-go source=sample      # the embedded 20,000-protein MF sample

The sources (metastudent-data or the embedded sample), their GO graphs and the label propagation are in
`swissprot_proteins`. Labels (go_mf, go_bp, go_cc) are propagated to every ancestor in the protein's own
ontology, with the three roots removed (they say nothing). The graph, the homology splits and the
single-label `mf_class` are described in `_METHOD`, which also goes into the card.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seqstruct.data import homology
from seqstruct.data.graph import Graph
from seqstruct.data.prepared import TRAIN, DatasetInfo, Prepared, register_recipe, write_prepared
from seqstruct.data.sources import metastudent
from seqstruct.data.sources.files import make_splits
from seqstruct.data.sources.swissprot_proteins import (
    GO_GRAPH,
    LICENCE,
    PACKAGE,
    Proteins,
    package_version,
    read_metastudent,
    read_sample,
    select_proteins,
)

logger = logging.getLogger(__name__)

NAME = "swissprot-go"
SOURCES = ("metastudent", "sample")
SPLITS = (TRAIN, "valid", "test_close", "test_remote")
NOTE = (
    "Annotations are those of 2014-01 as packaged by metastudent, without evidence codes; they include "
    "electronic (IEA) ones, so treat the labels as noisy."
)

_METHOD = """\
**Labels.** `go_mf`, `go_bp` and `go_cc` hold the protein's GO terms in that ontology, propagated to all
their ancestors through is_a and part_of edges (regulates edges are not followed) and kept within the same
ontology; the roots GO:0003674, GO:0008150 and GO:0005575 are removed; sorted. A term missing from the GO
graph is kept as it is (it cannot be propagated); a term that does not descend from the ontology's root
(an obsolete one) is dropped. Both are counted below.

**mf_class** is a single-label view of `go_mf`: the protein's most specific *frequent* MF term, where a
term is frequent when at least `class_min_size` train proteins carry it (after propagation). Because the
labels are ancestor-closed, a protein's frequent terms are too; when they have exactly one most specific
member (every other frequent term is one of its ancestors) that term is the class, otherwise (no frequent
term, or two frequent terms neither of which is an ancestor of the other) the class is "".

**Graph.** Two proteins are linked when they share a *specific* MF term: one carried (after propagation)
by between `min_term_size` and `max_term_size` proteins of the whole dataset. Undirected, weight 1, each
pair once. `max_term_size` bounds the cliques a term makes; graph.tsv keeps the edges inside train.

**Clusters and splits** (method=homology, the TAPE fold/family analogue). All proteins are clustered with
MMseqs2 `easy-cluster --min-seq-id L -c 0.8 --cov-mode 0` at each level L, cascaded: the highest level on
all proteins, each lower level on the representatives of the one above (so clusters are nested);
`cluster_NN` holds the representative's id. With the lowest level's clusters (30% by default), whole
clusters are drawn at random (seeded) into `test_remote` until it holds about `remote_fraction` of the
proteins (a cluster is taken only when it brings the count closer to the target, so one huge cluster cannot
swamp a small dataset). From the rest, proteins are drawn at random into `test_close` (about
`close_fraction`) and then `valid` (about `valid_fraction`), each only while its cluster keeps at least one
member in train. So no test_remote protein shares a lowest-level cluster with train, and every test_close
and valid protein does. The rest is `train`; a split left empty (a fraction of 0) is not written.
"""


# ---------------------------------------------------------------------------------------------------
# Pure steps: single label, graph, splits
# ---------------------------------------------------------------------------------------------------


def most_specific_frequent(
    labels: Sequence[Sequence[str]],
    train: Sequence[bool],
    min_size: int,
    ancestors: Callable[[str], Collection[str]],
) -> list[str]:
    """Per row, the unique most specific term among those carried by >= `min_size` train rows, else "".

    `labels` are ancestor-closed term sets (propagated); `ancestors(t)` holds t's ancestors (t itself may
    be included). A row whose frequent terms have two or more most specific members, that is two terms
    neither of which is an ancestor of the other, gets "" (see _METHOD).
    """
    if len(labels) != len(train):
        raise ValueError(f"{len(labels)} label rows but {len(train)} train flags")
    counts = Counter(t for row, is_train in zip(labels, train, strict=True) if is_train for t in row)
    frequent = {t for t, count in counts.items() if count >= min_size}
    cache: dict[tuple[str, ...], str] = {}
    out: list[str] = []
    for row in labels:
        key = tuple(row)
        if key not in cache:
            held = [t for t in key if t in frequent]
            specific = [t for t in held if not any(u != t and t in ancestors(u) for u in held)]
            cache[key] = specific[0] if len(specific) == 1 else ""
        out.append(cache[key])
    return out


def shared_term_graph(
    ids: Sequence[str], labels: Sequence[Sequence[str]], min_size: int, max_size: int
) -> tuple[Graph, list[str]]:
    """Proteins linked when they share a term carried by min_size..max_size of them; and those terms.

    Each term's members form a clique of at most max_size*(max_size-1)/2 pairs, built with numpy, never
    by a Python loop over pairs; pairs found through several terms are kept once.
    """
    if not 2 <= min_size <= max_size:
        raise ValueError(f"need 2 <= min_term_size <= max_term_size, got {min_size} and {max_size}")
    members: dict[str, list[int]] = {}
    for i, row in enumerate(labels):
        for term in row:
            members.setdefault(term, []).append(i)
    specific = sorted(t for t, rows in members.items() if min_size <= len(rows) <= max_size)
    n = len(ids)
    keys: list[np.ndarray] = []
    for term in specific:
        rows = np.asarray(members[term], dtype=np.int64)  # [k], ascending
        a, b = np.triu_indices(len(rows), k=1)  # [k(k-1)/2] each
        keys.append(rows[a] * n + rows[b])  # pair (i, j), i < j, as one int64
    unique = np.unique(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)  # [E] sorted
    edges = np.stack([unique // n, unique % n], axis=1) if len(unique) else np.zeros((0, 2), dtype=np.int64)
    return Graph(tuple(ids), edges, np.ones(len(edges), dtype=np.float32)), specific


def homology_splits(
    clusters: Mapping[str, str],
    remote_fraction: float = 0.1,
    close_fraction: float = 0.05,
    valid_fraction: float = 0.05,
    seed: int = 0,
) -> dict[str, str]:
    """id -> split (train, valid, test_close, test_remote) from id -> cluster representative (the rule is
    in _METHOD). Depends only on the clusters and the seed, not on the mapping's order."""
    fractions = {
        "remote_fraction": remote_fraction,
        "close_fraction": close_fraction,
        "valid_fraction": valid_fraction,
    }
    for label, fraction in fractions.items():
        if not 0 <= fraction < 1:
            raise ValueError(f"{label} must be in [0, 1), got {fraction}")
    if sum(fractions.values()) >= 1:
        raise ValueError(f"fractions {fractions} leave nothing to train on")
    ids = sorted(clusters)
    n = len(ids)
    groups: dict[str, list[str]] = {}
    for record_id in ids:
        groups.setdefault(clusters[record_id], []).append(record_id)
    reps = sorted(groups)
    rng = np.random.default_rng(seed)
    split = dict.fromkeys(ids, TRAIN)

    target = round(remote_fraction * n)
    remote = 0
    for k in rng.permutation(len(reps)).tolist():
        if remote >= target:
            break
        size = len(groups[reps[k]])
        if abs(remote + size - target) < target - remote:  # closer to the target with it than without
            for record_id in groups[reps[k]]:
                split[record_id] = "test_remote"
            remote += size

    left = {rep: len(members) for rep, members in groups.items()}  # members of each cluster still in train
    wanted = {"test_close": round(close_fraction * n), "valid": round(valid_fraction * n)}
    taken = dict.fromkeys(wanted, 0)
    pool = [record_id for record_id in ids if split[record_id] == TRAIN]
    for k in rng.permutation(len(pool)).tolist():
        name = next((s for s in wanted if taken[s] < wanted[s]), None)
        if name is None:
            break
        rep = clusters[pool[k]]
        if left[rep] > 1:
            split[pool[k]] = name
            taken[name] += 1
            left[rep] -= 1
    short = {s: (taken[s], wanted[s]) for s in wanted if taken[s] < wanted[s]}
    if short:
        logger.warning("homology splits: too few proteins in shared clusters for %s (taken, wanted)", short)
    return split


def _provenance(source: str, root: Path) -> str:
    if source == "sample":
        return (
            "The Swiss-Prot MF sample embedded in seqstruct (seqstruct/resources/swissprot_mf_sample.*, built by "
            "scripts/build_demo_data.py from the Debian package metastudent-data, dataset_201401: UniProtKB/"
            "Swiss-Prot 2014-01 with GO MF annotations) and the GO MF is_a/part_of graph shipped beside it "
            f"(swissprot_mf_sample_go_graph.tsv.gz, from the package's goGraph.txt). MMseqs2 {homology.mmseqs_version()}."
        )
    version = package_version()
    package = (
        f"Debian package {PACKAGE} {version} (dataset_201401)" if version else f"{PACKAGE} dataset_201401"
    )
    return (
        f"{package}: {root}/{{MFO,BPO,CCO}}/goasp.fasta.{{pin,phr,psq}} and goasp_annot.dat, {root}/{GO_GRAPH}; "
        "UniProtKB/Swiss-Prot 2014-01 sequences with the GO and its annotations of that time, as packaged by "
        f"metastudent. Clustering: MMseqs2 {homology.mmseqs_version()}. {NOTE}"
    )


# ---------------------------------------------------------------------------------------------------
# The recipe
# ---------------------------------------------------------------------------------------------------


def _level_column(level: float) -> str:
    return f"cluster_{round(100 * level)}"


@register_recipe(NAME)
def prepare_swissprot_go(
    output: Path,
    overwrite: bool = False,
    *,
    source: str = "metastudent",
    root: str = str(metastudent.METASTUDENT_DIR),
    max_term_size: int = 50,
    min_term_size: int = 2,
    levels: tuple[float, ...] = homology.DEFAULT_LEVELS,
    remote_fraction: float = 0.1,
    close_fraction: float = 0.05,
    valid_fraction: float = 0.05,
    class_min_size: int = 50,
    max_proteins: int = 0,
    max_length: int = 0,
    seed: int = 0,
    threads: int | None = None,
) -> Prepared:
    """Swiss-Prot 2014-01 proteins with propagated GO labels, a shared-specific-MF-term graph and homology
    splits (train, valid, test_close, test_remote) from MMseqs2 clusters."""
    from datasets import Features, List, Value

    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    levels = tuple(sorted({float(level) for level in levels}, reverse=True))
    if not levels or not all(0 < level <= 1 for level in levels):
        raise ValueError(f"levels must be identities in (0, 1], got {levels}")
    if len({_level_column(level) for level in levels}) != len(levels):
        raise ValueError(f"levels {levels} give the same column name twice (names use whole percents)")
    for label, value in (
        ("max_proteins", max_proteins),
        ("max_length", max_length),
        ("class_min_size", class_min_size),
    ):
        if value < 0:
            raise ValueError(f"{label} must be >= 0, got {value}")
    config = {
        "source": source, "root": str(root), "max_term_size": max_term_size, "min_term_size": min_term_size,
        "levels": list(levels), "remote_fraction": remote_fraction, "close_fraction": close_fraction,
        "valid_fraction": valid_fraction, "class_min_size": class_min_size, "max_proteins": max_proteins,
        "max_length": max_length, "seed": seed, "threads": threads,
    }  # fmt: skip
    homology.require_mmseqs()  # before minutes of reading, not after
    start = time.perf_counter()
    proteins = read_metastudent(Path(root)) if source == "metastudent" else read_sample()
    ids = select_proteins(proteins, max_length, max_proteins, seed)
    sequences = [proteins.sequences[i] for i in ids]
    del proteins.sequences
    label_columns = {column: [by_id.get(i, ()) for i in ids] for column, by_id in proteins.labels.items()}
    logger.info(
        "%d proteins selected in %.1f s; clustering at %s", len(ids), time.perf_counter() - start, levels
    )

    clusters = homology.cluster_levels(ids, sequences, levels, threads=threads)
    split_level = min(levels)
    split_of = homology_splits(clusters[split_level], remote_fraction, close_fraction, valid_fraction, seed)
    train_mask = [split_of[i] == TRAIN for i in ids]
    mf = label_columns.get("go_mf", [()] * len(ids))
    mf_class = most_specific_frequent(
        mf, train_mask, class_min_size, proteins.propagations["go_mf"].ancestors
    )
    graph, specific = shared_term_graph(ids, mf, min_term_size, max_term_size)
    logger.info("graph: %d edges from %d specific MF terms", len(graph.edges), len(specific))

    columns: dict[str, list[Any]] = {"id": ids, "text": sequences, "length": [len(s) for s in sequences]}
    columns.update(label_columns)
    columns.update({_level_column(level): [clusters[level][i] for i in ids] for level in sorted(levels)})
    columns["mf_class"] = mf_class
    features = Features(
        {
            "id": Value("string"),
            "text": Value("string"),
            "length": Value("int32"),
            **{column: List(Value("string")) for column in label_columns},
            **{_level_column(level): Value("string") for level in sorted(levels)},
            "mf_class": Value("string"),
        }
    )
    parts: dict[str, list[int]] = {name: [] for name in SPLITS}
    for k, record_id in enumerate(ids):
        parts[split_of[record_id]].append(k)
    # An empty split (a fraction of 0, or a tiny dataset) is left out: `datasets` cannot load one back.
    rows = {name: np.asarray(part, dtype=np.int64) for name, part in parts.items() if part or name == TRAIN}
    splits = make_splits(columns, features, rows)

    info = DatasetInfo(
        name=NAME,
        kind="protein",
        recipe=NAME,
        config=config,
        columns=_describe_columns(label_columns, levels, class_min_size),
        graph={
            "edge": f"the two proteins share a GO MF term carried by {min_term_size} to {max_term_size} proteins (after propagation)",
            "specific_terms": len(specific),
        },
        source=_provenance(source, Path(root)),
        licence=LICENCE,
        counts=_counts(proteins, ids, label_columns, clusters, split_of, mf_class, split_level),
    )
    method = f"method=homology (clusters at {round(100 * split_level)}% identity)\n\n{_METHOD}\n{NOTE}\n"
    prepared = write_prepared(output, info, splits, graph=graph, method=method, overwrite=overwrite)
    logger.info("swissprot-go: %s in %.1f s", prepared.info.splits, time.perf_counter() - start)
    return prepared


def _describe_columns(
    label_columns: Mapping[str, Any], levels: Sequence[float], class_min_size: int
) -> dict[str, str]:
    names = {"go_mf": "molecular function", "go_bp": "biological process", "go_cc": "cellular component"}
    described = {"length": "sequence length (residues)"}
    for column in label_columns:
        described[column] = (
            f"list of GO {names[column]} terms, propagated to ancestors (is_a, part_of), root removed, sorted"
        )
    for level in sorted(levels):
        described[_level_column(level)] = (
            f"id of the representative of the protein's MMseqs2 cluster at {round(100 * level)}% identity"
        )
    described["mf_class"] = (
        f"the most specific GO MF term among those carried by >= {class_min_size} train proteins, when unique; "
        "'' otherwise (single-label view of go_mf)"
    )
    return described


def _counts(
    proteins: Proteins,
    ids: Sequence[str],
    label_columns: Mapping[str, Sequence[Sequence[str]]],
    clusters: Mapping[float, Mapping[str, str]],
    split_of: Mapping[str, str],
    mf_class: Sequence[str],
    split_level: float,
) -> dict[str, Any]:
    counts = dict(proteins.counts)
    counts["proteins kept"] = len(ids)
    for column, rows in label_columns.items():
        propagation = proteins.propagations[column]
        counts[f"{column}: proteins with a term"] = sum(1 for row in rows if row)
        counts[f"{column}: distinct terms"] = len({t for row in rows for t in row})
        counts[f"{column}: protein-term pairs"] = sum(len(row) for row in rows)
        counts[f"{column}: terms absent from the GO graph (kept)"] = len(propagation.unknown)
        counts[f"{column}: terms outside the ontology, e.g. obsolete (dropped)"] = len(propagation.outside)
    for level, mapping in sorted(clusters.items()):
        counts[f"clusters at {round(100 * level)}%"] = len(set(mapping.values()))
    remote_clusters = {clusters[split_level][i] for i in ids if split_of[i] == "test_remote"}
    counts[f"test_remote: whole {round(100 * split_level)}% clusters"] = len(remote_clusters)
    counts["mf_class: classes"] = len(set(mf_class) - {""})
    counts["mf_class: proteins with a class"] = sum(1 for c in mf_class if c)
    return counts
