"""Cut a tiny real fixture for the swissprot-go recipe out of the installed metastudent-data.

Writes --out (default tests/fixtures/swissprot_go) in the layout of dataset_201401, so that the recipe's
test reads it exactly as it reads the package (CI has no metastudent-data):

    MFO/ BPO/ CCO/     goasp.fasta.{pin,phr,psq} (BLAST v4, the chosen proteins in their original order and
                       with their original titles) and goasp_annot.dat (their original lines)
    goGraph.txt        the original lines among the chosen proteins' terms and all their ancestors
    nameMapping.txt    the names of the annotated terms (the recipe does not read names)
    README.md          provenance, licence, this command, counts

The proteins: `--families` families of proteins that share one specific MF term (carried by at most
`--max-term-size` proteins of the package, so the members are mostly homologous), `--background`
proteins drawn uniformly from all of MFO, and `--other` proteins that have BP or CC annotations but no MF
one, so that the union of the three databases is exercised. All are at most `--max-length` residues long and
carry at most `--max-terms` GO terms, to keep the files small. Rebuilding with the same arguments gives identical bytes.

    python scripts/make_protein_fixtures.py --out tests/fixtures/swissprot_go
"""

from __future__ import annotations

import argparse
import logging
import shlex
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from seqstruct.data.sources.metastudent import (
    DB_NAME,
    METASTUDENT_DIR,
    ONTOLOGIES,
    parse_title,
    read_blast_db,
    write_blast_db,
)
from seqstruct.data.sources.swissprot_proteins import GO_GRAPH, Propagation, read_go_graph
from seqstruct.io import atomic_open

logger = logging.getLogger("make_protein_fixtures")

ANNOTATIONS = "goasp_annot.dat"
NAMES = "nameMapping.txt"


def read_annotation_lines(path: Path) -> dict[str, str]:
    """accession -> its original line of goasp_annot.dat (duplicates and all)."""
    with open(path, encoding="ascii") as handle:
        return {line.split("\t", 1)[0]: line for line in handle}


def choose(args: argparse.Namespace) -> list[str]:
    """The chosen accessions, sorted (see the module docstring)."""
    rng = np.random.default_rng(args.seed)
    length: dict[str, int] = {}
    n_terms: dict[str, int] = {}  # distinct GO terms over the three ontologies: few keeps the files small
    mf_terms: dict[str, list[str]] = {}
    for ontology in ONTOLOGIES:
        for title, seq in read_blast_db(args.root / ontology / DB_NAME):
            accession, terms = parse_title(title)
            length[accession] = len(seq)
            n_terms[accession] = n_terms.get(accession, 0) + len(terms)
            if ontology == "MFO":
                mf_terms[accession] = terms
    small = {a for a, n in length.items() if 50 <= n <= args.max_length and n_terms[a] <= args.max_terms}
    members: dict[str, list[str]] = {}
    for accession, terms in mf_terms.items():
        for term in terms:
            members.setdefault(term, []).append(accession)
    candidates = sorted(
        term
        for term, accs in members.items()
        if len(accs) <= args.max_term_size and sum(a in small for a in accs) >= args.family_size
    )
    chosen: set[str] = set()
    for term in rng.choice(candidates, size=args.families, replace=False).tolist():
        pool = sorted(a for a in members[term] if a in small)
        chosen.update(rng.choice(pool, size=args.family_size, replace=False).tolist())
    background = sorted(a for a in small - chosen if a in mf_terms)
    chosen.update(rng.choice(background, size=args.background, replace=False).tolist())
    others = sorted(a for a in small if a not in mf_terms)
    chosen.update(rng.choice(others, size=args.other, replace=False).tolist())
    return sorted(chosen)


def ancestors_closure(terms: Iterable[str], root: Path) -> set[str]:
    """The terms and all their is_a/part_of ancestors (any ontology), from goGraph.txt."""
    closure = Propagation(read_go_graph(root / GO_GRAPH), root="")  # root unused: only .ancestors is called
    return {a for term in terms for a in closure.ancestors(term)}


def write_fixture(args: argparse.Namespace, chosen: list[str]) -> dict[str, int]:
    wanted = set(chosen)
    counts: dict[str, int] = {}
    terms: set[str] = set()
    for ontology in ONTOLOGIES:
        records = [
            (title, seq)
            for title, seq in read_blast_db(args.root / ontology / DB_NAME)
            if title.partition("|")[0] in wanted
        ]
        write_blast_db(args.out / ontology / DB_NAME, records)
        lines = read_annotation_lines(args.root / ontology / ANNOTATIONS)
        kept = [lines[title.partition("|")[0]] for title, _ in records]
        with atomic_open(args.out / ontology / ANNOTATIONS, "w", encoding="ascii") as handle:
            handle.writelines(kept)
        terms.update(t for line in kept for t in line.rstrip("\n").split("\t")[1:] if t)
        counts[ontology] = len(records)
    closure = ancestors_closure(terms, args.root)
    with open(args.root / GO_GRAPH, encoding="ascii") as handle:
        edges = [line for line in handle if all(t in closure for t in line.split("\t")[:2])]
    with atomic_open(args.out / GO_GRAPH, "w", encoding="ascii") as handle:
        handle.writelines(edges)
    with open(args.root / NAMES, encoding="utf-8") as handle:
        names = [line for line in handle if line.partition("\t")[0] in terms]
    with atomic_open(args.out / NAMES, "w") as handle:
        handle.writelines(names)
    counts.update(
        proteins=len(chosen), annotated_terms=len(terms), graph_terms=len(closure), graph_lines=len(edges)
    )
    return counts


def command(args: argparse.Namespace) -> str:
    flags = ["--out", str(args.out), "--seed", str(args.seed), "--families", str(args.families)]
    flags += ["--family-size", str(args.family_size), "--background", str(args.background)]
    flags += ["--other", str(args.other), "--max-length", str(args.max_length)]
    flags += ["--max-term-size", str(args.max_term_size), "--max-terms", str(args.max_terms)]
    if args.root != METASTUDENT_DIR:
        flags += ["--root", str(args.root)]
    return shlex.join(["python", "scripts/make_protein_fixtures.py", *flags])


def readme(args: argparse.Namespace, counts: dict[str, int]) -> str:
    return f"""# swissprot_go test fixture

A tiny real cut of Debian's `metastudent-data` (dataset_201401: UniProtKB/Swiss-Prot 2014-01 proteins
with their GO annotations of that time), in the package's own layout, for the `swissprot-go` recipe's
tests (CI has no metastudent-data). Nothing here is synthetic: titles, sequences, annotation lines, GO
graph lines and names are copied; the BLAST v4 files are rewritten for the chosen records by
`seqstruct.data.sources.metastudent.write_blast_db` (byte-identical headers and sequences to the
package's).

| | |
|---|---:|
| proteins (union) | {counts["proteins"]} |
| in MFO / BPO / CCO | {counts["MFO"]} / {counts["BPO"]} / {counts["CCO"]} |
| annotated GO terms | {counts["annotated_terms"]} |
| terms in goGraph.txt (annotated ones and their ancestors) | {counts["graph_terms"]} |
| goGraph.txt lines | {counts["graph_lines"]} |

Chosen so that homology is present: {args.families} families of {args.family_size} proteins that share a
specific GO MF term (at most {args.max_term_size} proteins in the package), {args.background} proteins
drawn from the rest of MFO and {args.other} with BP or CC but no MF annotation; all 50..{args.max_length}
residues long with at most {args.max_terms} GO terms over the three ontologies (to keep the files small).
goGraph.txt keeps the original lines (all relations, parent first) among the annotated terms and their
is_a/part_of ancestors; nameMapping.txt the names of the annotated terms.

Licence: UniProtKB/Swiss-Prot and the Gene Ontology with its annotations are CC BY 4.0; so is this cut.
The 2014 annotations include electronic (IEA) ones.

Rebuild (needs `apt-get install -y metastudent-data`; same arguments, same bytes):
```
{command(args)}
```
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=METASTUDENT_DIR, help="metastudent dataset_201401 dir")
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/swissprot_go"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--families", type=int, default=8, help="specific MF terms whose proteins are taken")
    parser.add_argument("--family-size", type=int, default=20, help="proteins taken per family term")
    parser.add_argument("--background", type=int, default=110, help="proteins drawn from all of MFO")
    parser.add_argument("--other", type=int, default=30, help="proteins with BP/CC but no MF annotation")
    parser.add_argument("--max-length", type=int, default=160, help="longest protein taken")
    parser.add_argument("--max-term-size", type=int, default=150, help="largest family term (proteins)")
    parser.add_argument("--max-terms", type=int, default=8, help="most GO terms (all ontologies) per protein")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    chosen = choose(args)
    counts = write_fixture(args, chosen)
    with atomic_open(args.out / "README.md") as handle:
        handle.write(readme(args, counts))
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    logger.info("%s: %s, %d bytes in all", args.out, counts, total)


if __name__ == "__main__":
    main()
