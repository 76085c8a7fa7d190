"""Reading Swiss-Prot's GO graphs and propagating labels (the sources themselves are read by the
swissprot-go recipe's tests, on the metastudent fixture and the embedded sample)."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from seqstruct.data.sources.swissprot_proteins import (
    ROOT_TERMS,
    Propagation,
    read_go_graph,
    read_sample_go_graph,
)

MF, BP, CC = "GO:0003674", "GO:0008150", "GO:0005575"


def test_root_terms_are_go_namespace_roots() -> None:
    assert ROOT_TERMS == {"MFO": MF, "BPO": BP, "CCO": CC}


# --- GO graph and propagation ------------------------------------------------------------------------------


def test_read_go_graph_reads_parent_first_and_follows_is_a_and_part_of_only(tmp_path: Path) -> None:
    path = tmp_path / "goGraph.txt"
    path.write_text(
        "GO:0048308\tGO:0000001\t1\tis_a\n"  # mitochondrion inheritance is_a organelle inheritance
        "GO:0005739\tGO:0000002\t1\tpart_of\n"
        "GO:0000003\tGO:0000002\t1\tregulates\n"
        "\n"
        "obsolete_molecular_function\tGO:0000005\t1\tis_a\n",
        encoding="ascii",
    )
    assert read_go_graph(path) == {
        "GO:0000001": {"GO:0048308"},
        "GO:0000002": {"GO:0005739"},
        "GO:0000005": {"obsolete_molecular_function"},
    }


def test_read_go_graph_names_the_line_of_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "goGraph.txt"
    path.write_text("GO:1\tGO:2\t1\tis_a\nGO:1 GO:3 1 is_a\n", encoding="ascii")
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}, line 2: expected 4 tab-separated fields"):
        read_go_graph(path)


def test_read_sample_go_graph_needs_its_header(tmp_path: Path) -> None:
    path = tmp_path / "g.tsv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(
            "child\tparent\trelation\nGO:2\tGO:1\tis_a\nGO:3\tGO:1\tpart_of\nGO:3\tGO:2\tregulates\n"
        )
    assert read_sample_go_graph(path) == {"GO:2": {"GO:1"}, "GO:3": {"GO:1"}}
    with gzip.open(path, "wt") as handle:
        handle.write("GO:2\tGO:1\tis_a\n")
    with pytest.raises(ValueError, match="line 1: expected the header"):
        read_sample_go_graph(path)


# A small MF DAG (child -> parents):  MF <- A <- B,  A <-(part_of) C,  B and C <- D;  E obsolete;
# F in MF with a part_of parent P in BP (an edge that leaves the ontology).
DAG = {
    "A": {MF},
    "B": {"A"},
    "C": {"A"},
    "D": {"B", "C"},
    "E": {"obsolete_molecular_function"},
    "F": {MF, "P"},
    "P": {BP},
}


def test_propagation_adds_ancestors_in_the_ontology_and_drops_the_root() -> None:
    propagate = Propagation(DAG, MF)
    assert propagate(["D"]) == ("A", "B", "C", "D")
    assert propagate(["B", "B", MF]) == ("A", "B")
    assert propagate(["F"]) == ("F",)  # P is a BP term: not an MF label
    assert propagate([]) == ()


def test_propagation_keeps_unknown_terms_and_drops_those_outside_the_ontology() -> None:
    propagate = Propagation(DAG, MF)
    assert propagate(["X", "E", "B"]) == ("A", "B", "X")
    assert propagate.unknown == {"X"} and propagate.outside == {"E"}
    assert Propagation(DAG, BP)(["P", "D"]) == ("P",)  # from BP's side, D is outside


def test_propagation_reports_a_cycle() -> None:
    with pytest.raises(ValueError, match="cycle through A: A -> B -> A"):
        Propagation({"A": {"B"}, "B": {"A"}}, MF)(["A"])
