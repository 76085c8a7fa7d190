"""Build the embedded demo data: a uniform random sample of Swiss-Prot 2014-01 proteins with GO terms.

Reads one ontology of the Debian package metastudent-data (no ncbi-blast+ needed) and writes, into --out
(`mf` stands for the ontology: mf, bp or cc):
    swissprot_mf_sample.fasta.gz      `>ACCESSION` records, 60 residues a line, sorted by accession
    swissprot_mf_sample_go.tsv.gz     header `accession<TAB>go_mf`, then GO terms comma-separated, same order
    swissprot_mf_sample_go_graph.tsv.gz  header `child<TAB>parent<TAB>relation`, then the is_a and part_of
                                      edges of goGraph.txt among the ontology's terms (for propagation)
    swissprot_mf_sample.md            provenance, licence, the command and summary counts
Rebuilding with the same arguments gives byte-identical files (gzip mtime 0, no timestamps).

    python scripts/build_demo_data.py --ontology MFO --n 20000 --seed 0 --out src/seqstruct/resources
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import shlex
import statistics
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqstruct.data.sources.metastudent import METASTUDENT_DIR, is_protein, read_ontology
from seqstruct.data.sources.swissprot_proteins import (
    GO_GRAPH,
    PROPAGATED,
    ROOT_TERMS,
    SAMPLE_GRAPH_HEADER,
    Propagation,
    read_go_graph,
)
from seqstruct.io import atomic_open, atomic_path

SHORT = {"MFO": "mf", "BPO": "bp", "CCO": "cc"}  # ontology -> the tag used in file and column names
LINE_WIDTH = 60
PACKAGE = "metastudent-data"


@dataclass(frozen=True)
class Protein:
    accession: str
    go_ids: tuple[str, ...]
    sequence: str


def load_proteins(ontology: str, root: Path) -> tuple[list[Protein], list[str]]:
    """All proteins of one ontology that our FASTA reader accepts, and the accessions that were skipped."""
    kept: list[Protein] = []
    skipped: list[str] = []
    for accession, go_ids, sequence in read_ontology(ontology, root):
        if is_protein(sequence):
            kept.append(Protein(accession, tuple(go_ids), sequence))
        else:
            skipped.append(accession)
    return kept, skipped


def sample(proteins: list[Protein], n: int, seed: int) -> list[Protein]:
    """A uniform sample without replacement, sorted by accession so the output order is canonical."""
    if n > len(proteins):
        raise ValueError(f"asked for {n} proteins, only {len(proteins)} are available")
    picks = np.random.default_rng(seed).choice(len(proteins), size=n, replace=False)
    return sorted((proteins[i] for i in picks), key=lambda p: p.accession)


def fasta_text(proteins: Iterable[Protein]) -> str:
    lines: list[str] = []
    for protein in proteins:
        lines.append(f">{protein.accession}")
        seq = protein.sequence
        lines.extend(seq[i : i + LINE_WIDTH] for i in range(0, len(seq), LINE_WIDTH))
    return "\n".join(lines) + "\n"


def output_names(ontology: str) -> tuple[str, str, str]:
    """File names of the FASTA, the GO table and the data card for one ontology."""
    stem = f"swissprot_{SHORT[ontology]}_sample"
    return f"{stem}.fasta.gz", f"{stem}_go.tsv.gz", f"{stem}.md"


def graph_name(ontology: str) -> str:
    """File name of the ontology's GO graph (is_a and part_of edges) shipped beside the sample."""
    return f"swissprot_{SHORT[ontology]}_sample_go_graph.tsv.gz"


def go_graph_text(root: Path, ontology: str) -> str:
    """The is_a and part_of edges of goGraph.txt whose two ends are terms of `ontology` (the root
    included), as `child<TAB>parent<TAB>relation` under a header, sorted: what the swissprot-go recipe
    needs to propagate the sample's labels without metastudent-data. goGraph.txt lists the parent first."""
    path = root / GO_GRAPH
    terms = Propagation(read_go_graph(path), ROOT_TERMS[ontology])
    rows: set[str] = set()
    with open(path, encoding="ascii") as handle:
        for line in handle:
            parent, child, _, relation = line.rstrip("\n").split("\t")
            if relation in PROPAGATED and terms.inside(child) and terms.inside(parent):
                rows.add(f"{child}\t{parent}\t{relation}")
    return "\n".join([SAMPLE_GRAPH_HEADER, *sorted(rows)]) + "\n"


def go_tsv_text(proteins: Iterable[Protein], ontology: str) -> str:
    rows = [f"accession\tgo_{SHORT[ontology]}"]
    rows.extend(f"{p.accession}\t{','.join(sorted(p.go_ids))}" for p in proteins)
    return "\n".join(rows) + "\n"


def write_gzip(path: Path, text: str) -> bytes:
    """Write `text` gzipped and atomically; return the bytes written (for the checksum in the card).

    atomic_open would gzip too, but with the current time and the temporary file's name in the gzip
    header, so two builds would differ; mtime=0 and an empty name make the bytes reproducible.
    """
    with (
        atomic_path(path) as tmp,
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
    ):
        gz.write(text.encode("ascii"))
    return path.read_bytes()


def package_version(package: str) -> str:
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown (dpkg-query failed)"
    return out.stdout.strip()


def build_command(args: argparse.Namespace) -> str:
    flags = [
        "--ontology",
        args.ontology,
        "--n",
        str(args.n),
        "--seed",
        str(args.seed),
        "--out",
        str(args.out),
    ]
    if args.root != METASTUDENT_DIR:
        flags += ["--root", str(args.root)]
    return shlex.join(["python", "scripts/build_demo_data.py", *flags])


def card_text(
    proteins: list[Protein], *, total: int, skipped: list[str], args: argparse.Namespace, checksums: dict
) -> str:
    lengths = [len(p.sequence) for p in proteins]
    terms = {t for p in proteins for t in p.go_ids}
    n_annotations = sum(len(p.go_ids) for p in proteins)
    skipped_note = (
        f"{len(skipped)} proteins were skipped because their sequence holds '-', '*' or 'J' "
        f"({', '.join(skipped[:10])}{', …' if len(skipped) > 10 else ''})."
        if skipped
        else "No protein had to be skipped ('-', '*' or 'J' in the sequence)."
    )
    fasta_name, go_name, _ = output_names(args.ontology)
    checksum_rows = "\n".join(f"| `{name}` | `{digest}` |" for name, digest in checksums.items())
    return f"""# Swiss-Prot {args.ontology} sample (demo data)

A uniform random sample of {len(proteins):,} proteins from UniProtKB/Swiss-Prot (release of 2014-01)
with their Gene Ontology **{args.ontology}** annotations, for `make demo` and small experiments.

## Files
| file | contents |
|---|---|
| `{fasta_name}` | one record per protein, header `>ACCESSION`, sequence in {LINE_WIDTH}-residue lines, \
sorted by accession |
| `{go_name}` | header `accession<TAB>go_{SHORT[args.ontology]}`; GO ids comma-separated, \
sorted, deduplicated |
| `{graph_name(args.ontology)}` | header `child<TAB>parent<TAB>relation`; the is_a and part_of edges of \
the package's `goGraph.txt` among GO {args.ontology} terms (root included), sorted: propagates the labels \
(`seqstruct data prepare swissprot-go source=sample`) |

## Source
- Debian package `{PACKAGE}` version {package_version(PACKAGE)} (metastudent's dataset_201401),
  `{args.root / args.ontology}/goasp.fasta.{{pin,phr,psq}}` (BLAST v4 protein database, titles
  `ACCESSION|GO:…`), read with `seqstruct.data.sources.metastudent` (no BLAST tools needed).
- Upstream: UniProtKB/Swiss-Prot 2014-01 (sequences) and the Gene Ontology with its annotations of
  that time (GO terms), as packaged by metastudent.
- Licence: UniProtKB and GO are distributed under CC BY 4.0; this derived sample is too. Cite UniProt
  (The UniProt Consortium, Nucleic Acids Res.) and the Gene Ontology (Ashburner et al. 2000; The Gene
  Ontology Consortium).
- The annotations carry no evidence codes, and those of 2014 include electronic (IEA) ones: treat the
  labels as noisy and say so wherever results on them are reported. Terms are as shipped, which is
  neither leaf-only nor propagated: some proteins list a term with its parent, most lack some ancestors.
  Propagate with `{graph_name(args.ontology)}` (cut from the package's `goGraph.txt`) where a method needs
  ancestor-closed label sets; the `swissprot-go` recipe does.

## How it was built
```
{build_command(args)}
```
Uniform sample without replacement, `numpy.random.default_rng({args.seed})`, over the
{total - len(skipped):,} usable proteins of the {total:,} in the {args.ontology} database. {skipped_note}
gzip is written with mtime 0, so rebuilding gives byte-identical files.

## Counts
| | |
|---|---|
| proteins | {len(proteins):,} |
| residues | {sum(lengths):,} |
| length min / median / max | {min(lengths):,} / {statistics.median(lengths):,g} / {max(lengths):,} |
| distinct GO {args.ontology} terms | {len(terms):,} |
| protein-term annotations | {n_annotations:,} |

## SHA-256
| file | digest |
|---|---|
{checksum_rows}
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ontology", default="MFO", choices=sorted(SHORT))
    parser.add_argument("--n", type=int, default=20000, help="number of proteins to sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("src/seqstruct/resources"))
    parser.add_argument("--root", type=Path, default=METASTUDENT_DIR, help="metastudent dataset_201401 dir")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    proteins, skipped = load_proteins(args.ontology, args.root)
    total = len(proteins) + len(skipped)
    chosen = sample(proteins, args.n, args.seed)
    fasta_name, go_name, card_name = output_names(args.ontology)
    outputs = (
        (fasta_name, fasta_text(chosen)),
        (go_name, go_tsv_text(chosen, args.ontology)),
        (graph_name(args.ontology), go_graph_text(args.root, args.ontology)),
    )
    checksums = {
        name: hashlib.sha256(write_gzip(args.out / name, text)).hexdigest() for name, text in outputs
    }
    with atomic_open(args.out / card_name, "w") as handle:
        handle.write(card_text(chosen, total=total, skipped=skipped, args=args, checksums=checksums))
    lengths = [len(p.sequence) for p in chosen]
    print(
        f"{args.ontology}: {total:,} proteins read, {len(skipped):,} skipped, {len(chosen):,} sampled "
        f"({sum(lengths):,} residues, median length {statistics.median(lengths):g}, "
        f"{len({t for p in chosen for t in p.go_ids}):,} GO terms) in {time.perf_counter() - start:.1f} s"
    )
    for name in (fasta_name, go_name, graph_name(args.ontology), card_name):
        print(f"  {args.out / name}  {(args.out / name).stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
