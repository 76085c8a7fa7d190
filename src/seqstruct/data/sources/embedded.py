"""The data shipped inside the package: a Swiss-Prot sample with GO molecular-function terms.

Built by scripts/build_demo_data.py from Debian's metastudent-data; provenance in its .md beside it.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

_RESOURCES = Path(str(files("seqstruct") / "resources"))
SAMPLE_FASTA = _RESOURCES / "swissprot_mf_sample.fasta.gz"  # 20,000 proteins, >ACCESSION headers
SAMPLE_GO_MF = _RESOURCES / "swissprot_mf_sample_go.tsv.gz"  # accession<TAB>comma-separated GO MF ids
# child<TAB>parent<TAB>relation: the is_a/part_of edges among GO MF terms from metastudent's goGraph.txt,
# for propagating the sample's labels (the swissprot-go recipe with source=sample)
SAMPLE_GO_GRAPH = _RESOURCES / "swissprot_mf_sample_go_graph.tsv.gz"
