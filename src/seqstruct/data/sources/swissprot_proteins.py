"""Swiss-Prot 2014-01 proteins with propagated GO labels: read from a source, then selected.

Sources:
    metastudent  Debian's `metastudent-data` (`root`, default /usr/share/metastudent-data/dataset_201401,
                 or any directory with its layout such as tests/fixtures/swissprot_go): one BLAST v4
                 database per ontology, MFO/BPO/CCO/goasp.fasta.{pin,phr,psq}, with goasp_annot.dat
                 (`ACCESSION<TAB>GO:id<TAB>...`, ids repeated) and goGraph.txt. The proteins are the union
                 of the three databases, each sequence taken from whichever database holds it.
    sample       the Swiss-Prot MF sample shipped in seqstruct/resources (20,000 proteins, MF only) with
                 the GO MF graph beside it (swissprot_mf_sample_go_graph.tsv.gz); no go_bp or go_cc.

goGraph.txt is `PARENT<TAB>CHILD<TAB>1<TAB>relation` (parent first: `GO:0048308 GO:0000001 1 is_a` says
mitochondrion inheritance is_a organelle inheritance); the sample's graph file is the plainer
`child<TAB>parent<TAB>relation`. Only is_a and part_of are followed, as in CAFA's propagation; regulates
edges are not, since a regulator of X does not do X. Labels (go_mf, go_bp, go_cc) are propagated to every
ancestor in the protein's own ontology, with the three roots removed (they say nothing).

The `swissprot-go` and `swissprot-pretrain` recipes both start here.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seqstruct.data.fasta import iter_fasta
from seqstruct.data.sources import embedded, metastudent
from seqstruct.data.sources.go import ROOTS
from seqstruct.io import open_text

logger = logging.getLogger(__name__)

# metastudent's ontology -> GO namespace; its roots are removed from the labels.
NAMESPACE = {"MFO": "MF", "BPO": "BP", "CCO": "CC"}
ROOT_TERMS = {ontology: ROOTS[namespace] for ontology, namespace in NAMESPACE.items()}
LABEL_COLUMNS = {"MFO": "go_mf", "BPO": "go_bp", "CCO": "go_cc"}
PROPAGATED = frozenset({"is_a", "part_of"})
GO_GRAPH = "goGraph.txt"
PACKAGE = "metastudent-data"
LICENCE = "UniProtKB/Swiss-Prot and GO annotations: CC BY 4.0"


# ---------------------------------------------------------------------------------------------------
# GO graph and propagation
# ---------------------------------------------------------------------------------------------------


def read_go_graph(path: str | Path) -> dict[str, set[str]]:
    """term -> its is_a/part_of parents, from metastudent's goGraph.txt (`parent child 1 relation`)."""
    return _read_edges(path, columns=4, child=1, parent=0, relation=3)


SAMPLE_GRAPH_HEADER = "child\tparent\trelation"


def read_sample_go_graph(path: str | Path) -> dict[str, set[str]]:
    """term -> its is_a/part_of parents, from the sample's graph file: the header `child<TAB>parent<TAB>
    relation`, then one edge a line (gzip ok)."""
    return _read_edges(path, columns=3, child=0, parent=1, relation=2, header=SAMPLE_GRAPH_HEADER)


def _read_edges(
    path: str | Path, *, columns: int, child: int, parent: int, relation: int, header: str | None = None
) -> dict[str, set[str]]:
    parents: dict[str, set[str]] = {}
    with open_text(path) as handle:
        for line_number, line in enumerate(handle, start=1):
            text = line.rstrip("\r\n")
            if header is not None and line_number == 1:
                if text != header:
                    raise ValueError(f"{path}, line 1: expected the header {header!r}, got {text!r}")
                continue
            if not text:
                continue
            fields = text.split("\t")
            if len(fields) != columns or not fields[child] or not fields[parent]:
                raise ValueError(
                    f"{path}, line {line_number}: expected {columns} tab-separated fields, got {text!r}"
                )
            if fields[relation] in PROPAGATED:
                parents.setdefault(fields[child], set()).add(fields[parent])
    return parents


class Propagation:
    """Propagates GO term sets to their ancestors within one ontology (the one under `root`).

    Closures are memoised per term and results per distinct input set: hundreds of thousands of proteins
    share far fewer distinct annotation sets. `unknown` collects terms absent from the graph (kept as
    they are), `outside` terms present but not under `root` (dropped), for the card.
    """

    def __init__(self, parents: Mapping[str, Collection[str]], root: str) -> None:
        self.root = root
        self._parents = parents
        self._known = set(parents) | {p for ps in parents.values() for p in ps}
        self._closure: dict[str, frozenset[str]] = {}
        self._inside: dict[str, frozenset[str]] = {}
        self._cache: dict[frozenset[str], tuple[str, ...]] = {}
        self.unknown: set[str] = set()
        self.outside: set[str] = set()

    def ancestors(self, term: str) -> frozenset[str]:
        """The term and all its is_a/part_of ancestors (any ontology). GO is a DAG; a cycle is an error."""
        return self._ancestors(term, ())

    def _ancestors(self, term: str, path: tuple[str, ...]) -> frozenset[str]:
        found = self._closure.get(term)
        if found is not None:
            return found
        if term in path:
            raise ValueError(f"the GO graph has a cycle through {term}: {' -> '.join((*path, term))}")
        closure = {term}
        for parent in self._parents.get(term, ()):
            closure |= self._ancestors(parent, (*path, term))  # GO is ~15 levels deep: recursion is fine
        self._closure[term] = frozenset(closure)
        return self._closure[term]

    def inside(self, term: str) -> frozenset[str]:
        """The term and its ancestors that lie in this ontology (descend from `root`); empty if it does not."""
        found = self._inside.get(term)
        if found is None:
            closure = self.ancestors(term)
            found = (
                frozenset(a for a in closure if self.root in self.ancestors(a))
                if self.root in closure
                else frozenset()
            )
            self._inside[term] = found
        return found

    def __call__(self, terms: Iterable[str]) -> tuple[str, ...]:
        """`terms` and their ancestors in this ontology, the root removed, sorted."""
        key = frozenset(terms)
        result = self._cache.get(key)
        if result is None:
            kept: set[str] = set()
            for term in key:
                if term not in self._known:
                    self.unknown.add(term)
                    kept.add(term)
                elif term != self.root and not self.inside(term):
                    self.outside.add(term)
                else:
                    kept |= self.inside(term)
            kept.discard(self.root)
            result = self._cache[key] = tuple(sorted(kept))
        return result


# ---------------------------------------------------------------------------------------------------
# Reading the sources, selecting the proteins
# ---------------------------------------------------------------------------------------------------


@dataclass
class Proteins:
    """Proteins read from a source: sequences and propagated labels by accession, and counts."""

    sequences: dict[str, str] = field(default_factory=dict)
    labels: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)  # column -> id -> terms
    counts: dict[str, Any] = field(default_factory=dict)
    propagations: dict[str, Propagation] = field(default_factory=dict)  # column -> its propagation


def _check_root(root: Path) -> None:
    needed = [root / GO_GRAPH] + [
        root / ontology / name
        for ontology in metastudent.ONTOLOGIES
        for name in (
            f"{metastudent.DB_NAME}.pin",
            f"{metastudent.DB_NAME}.phr",
            f"{metastudent.DB_NAME}.psq",
            "goasp_annot.dat",
        )
    ]
    missing = [str(path) for path in needed if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{root}: not metastudent's dataset_201401 layout ({len(missing)} files missing, e.g. {missing[0]}); "
            f"{metastudent.INSTALL_HINT}, or give root=DIR with MFO/, BPO/, CCO/ and {GO_GRAPH}"
        )


def read_metastudent(root: Path) -> Proteins:
    _check_root(root)
    parents = read_go_graph(root / GO_GRAPH)
    out = Proteins()
    conflicts: list[str] = []
    for ontology in metastudent.ONTOLOGIES:
        start = time.perf_counter()
        column = LABEL_COLUMNS[ontology]
        propagate = out.propagations[column] = Propagation(parents, ROOT_TERMS[ontology])
        annotations = metastudent.read_annotations(ontology, root)
        labels: dict[str, tuple[str, ...]] = {}
        from_title = 0
        for title, sequence in metastudent.read_blast_db(root / ontology / metastudent.DB_NAME):
            accession, title_terms = metastudent.parse_title(title)
            known = out.sequences.setdefault(accession, sequence)
            if known != sequence:
                conflicts.append(accession)
            terms = annotations.get(accession)
            if terms is None:  # not in goasp_annot.dat: the database title lists the same terms
                terms, from_title = title_terms, from_title + 1
            labels[accession] = propagate(terms)
        without_sequence = len(set(annotations) - set(labels))
        del annotations
        out.labels[column] = labels
        out.counts[f"{ontology} proteins"] = len(labels)
        if from_title:
            out.counts[
                f"{ontology} proteins annotated from the BLAST title (absent from goasp_annot.dat)"
            ] = from_title
        if without_sequence:
            out.counts[f"{ontology} annotated accessions without a sequence (ignored)"] = without_sequence
        logger.info(
            "%s: %d proteins read and propagated in %.1f s",
            ontology,
            len(labels),
            time.perf_counter() - start,
        )
    out.counts["proteins read (union of MFO, BPO, CCO)"] = len(out.sequences)
    if conflicts:
        logger.warning(
            "%d accessions have different sequences in two databases; the first read is kept", len(conflicts)
        )
        out.counts["accessions with conflicting sequences (first kept)"] = len(conflicts)
    return out


def read_sample() -> Proteins:
    """The embedded Swiss-Prot MF sample with its GO MF graph: MF labels only."""
    if not embedded.SAMPLE_GO_GRAPH.is_file():
        raise FileNotFoundError(
            f"{embedded.SAMPLE_GO_GRAPH} not found: rebuild the sample with scripts/build_demo_data.py"
        )
    out = Proteins()
    propagate = out.propagations["go_mf"] = Propagation(
        read_sample_go_graph(embedded.SAMPLE_GO_GRAPH), ROOT_TERMS["MFO"]
    )
    for record in iter_fasta(embedded.SAMPLE_FASTA):
        out.sequences[record.id] = record.sequence
    labels: dict[str, tuple[str, ...]] = {}
    with open_text(embedded.SAMPLE_GO_MF) as handle:
        header = handle.readline().rstrip("\n")
        if header != "accession\tgo_mf":
            raise ValueError(
                f"{embedded.SAMPLE_GO_MF}, line 1: expected header 'accession<TAB>go_mf', got {header!r}"
            )
        for line_number, line in enumerate(handle, start=2):
            accession, sep, terms = line.rstrip("\n").partition("\t")
            if not sep or accession not in out.sequences:
                raise ValueError(
                    f"{embedded.SAMPLE_GO_MF}, line {line_number}: expected an accession of the sample FASTA, a tab and GO ids"
                )
            labels[accession] = propagate(t for t in terms.split(",") if t)
    out.labels["go_mf"] = labels
    out.counts["proteins read"] = len(out.sequences)
    out.counts["go_bp, go_cc"] = "absent: the embedded sample carries GO MF annotations only"
    return out


def package_version() -> str:
    try:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", PACKAGE], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return ""
    return result.stdout.strip()


def select_proteins(proteins: Proteins, max_length: int, max_proteins: int, seed: int) -> list[str]:
    """Accessions kept, sorted: protein letters only, at most `max_length` long, then a seeded subsample."""
    ids = sorted(proteins.sequences)
    valid = [i for i in ids if metastudent.is_protein(proteins.sequences[i])]
    proteins.counts["proteins skipped: letters outside the protein alphabet ('-', '*', 'J')"] = len(
        ids
    ) - len(valid)
    if max_length:
        kept = [i for i in valid if len(proteins.sequences[i]) <= max_length]
        logger.info(
            "max_length=%d: %d of %d proteins dropped as longer",
            max_length,
            len(valid) - len(kept),
            len(valid),
        )
        proteins.counts[f"proteins dropped: longer than max_length={max_length}"] = len(valid) - len(kept)
        valid = kept
    if max_proteins and max_proteins < len(valid):
        picks = np.random.default_rng(seed).choice(len(valid), size=max_proteins, replace=False)
        proteins.counts[f"proteins left out by max_proteins={max_proteins} (seeded uniform subsample)"] = (
            len(valid) - max_proteins
        )
        valid = [valid[i] for i in np.sort(picks)]
    if not valid:
        raise ValueError("no protein left to prepare (check max_length and the source)")
    return valid
