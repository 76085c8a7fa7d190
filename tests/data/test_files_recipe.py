"""The `files` recipe and the split and graph helpers the text recipes share with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seqstruct.data.fasta import FastaError, read_fasta
from seqstruct.data.graph import GraphError, read_edge_list
from seqstruct.data.labels import LabelError
from seqstruct.data.sources.files import (
    TextTableError,
    graph_from_pairs,
    prepare_files,
    random_split,
    read_text_table,
    tally,
)

SENTENCES = [
    ("s01", "The cat sat on the mat."),
    ("s02", "A dog barked all night."),
    ("s03", "Glucose is broken down in glycolysis."),
    ("s04", "Ribosomes translate messenger RNA."),
    ("s05", "The river flooded the valley."),
    ("s06", "Mitochondria make ATP."),
    ("s07", "She ran to the station."),
    ("s08", "Proteins fold into structures."),
    ("s09", "Rain fell on the hills."),
    ("s10", "Enzymes lower activation energy."),
]
TOPIC = {"s01": "animal", "s02": "animal", "s05": "nature", "s07": "person", "s09": "nature"}  # else biology


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def text_files(tmp_path: Path) -> dict[str, Path]:
    return {
        "text": _write(tmp_path / "text.tsv", ["id\ttext", *(f"{i}\t{t}" for i, t in SENTENCES)]),
        "labels": _write(
            tmp_path / "labels.tsv",
            [
                "id\ttopic\tsplit",
                *(
                    f"{i}\t{TOPIC.get(i, 'biology')}\t{'test' if i == 's03' else 'train'}"
                    for i, _ in SENTENCES
                ),
            ],
        ),  # fmt: skip
        "graph": _write(tmp_path / "graph.tsv", ["s01\ts02", "s03\ts04", "s04\ts06", "s05\ts09", "s08\ts10"]),
    }


def test_random_split_sizes_cover_and_do_not_overlap() -> None:
    ids = [f"r{i:02d}" for i in range(20)]
    parts = random_split(ids, valid_fraction=0.1, test_fraction=0.2, seed=0)
    assert {name: len(rows) for name, rows in parts.items()} == {"train": 14, "valid": 2, "test": 4}
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(20))


def test_random_split_depends_on_the_ids_not_their_order() -> None:
    ids = [f"r{i:02d}" for i in range(30)]
    shuffled = [ids[i] for i in np.random.default_rng(1).permutation(30)]

    def by_id(names: list[str], seed: int) -> dict[str, set[str]]:
        return {part: {names[i] for i in rows} for part, rows in random_split(names, 0.2, 0.2, seed).items()}

    assert by_id(ids, 0) == by_id(shuffled, 0)
    assert by_id(ids, 0) != by_id(ids, 1)


def test_random_split_leaves_out_empty_parts_and_refuses_bad_fractions() -> None:
    assert set(random_split(["a", "b", "c"], 0.0, 0.0, 0)) == {"train"}
    assert {k: len(v) for k, v in random_split(["a", "b", "c"], 0.01, 0.0, 0).items()} == {
        "train": 2,
        "valid": 1,
    }
    with pytest.raises(ValueError, match="valid_fraction must be in"):
        random_split(["a", "b"], 1.0, 0.0, 0)
    with pytest.raises(ValueError, match="leave none to train on"):
        random_split(["a", "b"], 0.5, 0.5, 0)


def test_graph_from_pairs_drops_repeats_loops_and_counts_unknown_ends() -> None:
    graph, dropped = graph_from_pairs(
        ["a", "b", "c"], [("b", "a"), ("a", "b"), ("c", "c"), ("c", "z"), ("a", "c")]
    )
    assert graph.edges.tolist() == [[0, 1], [0, 2]] and graph.weights.tolist() == [1.0, 1.0]
    assert dropped == 1 and not graph.directed


def test_tally_orders_by_count_then_value() -> None:
    assert tally(["b", "a", "b", "c", "a", "b"], "x: ") == {"x: b": 3, "x: a": 2, "x: c": 1}


def test_text_files_become_a_text_dataset_with_labels_and_a_cut_graph(
    text_files: dict[str, Path], tmp_path: Path
) -> None:
    out = prepare_files(
        tmp_path / "mine", text=text_files["text"], labels=text_files["labels"], graph=text_files["graph"],
        valid_fraction=0.2, test_fraction=0.2, seed=4,
    )  # fmt: skip
    assert out.info.kind == "text" and out.info.name == "mine" and out.info.recipe == "files"
    assert out.info.splits == {"train": 6, "valid": 2, "test": 2}
    texts = dict(SENTENCES)
    rows = [row for name in out.splits for row in out.splits[name]]
    assert sorted(row["id"] for row in rows) == sorted(texts)
    for row in rows:
        assert row["text"] == texts[row["id"]]
        assert row["topic"] == TOPIC.get(row["id"], "biology") and row["split"] in ("train", "test")
    assert out.split("train").features["topic"].dtype == "string"
    train = set(out.split("train")["id"])
    nodes = [i for i, _ in SENTENCES]
    inside, _ = read_edge_list(out.graph_path, nodes)
    for a, b in inside.edges.tolist():
        assert nodes[a] in train and nodes[b] in train
    outside, _ = read_edge_list(out.heldout_graph_path, nodes)
    assert len(inside.edges) + len(outside.edges) == 5
    for a, b in outside.edges.tolist():
        assert nodes[a] not in train or nodes[b] not in train
    assert "sha256" in out.info.source and str(text_files["graph"].resolve()) in out.info.source


def test_the_seed_decides_the_split(text_files: dict[str, Path], tmp_path: Path) -> None:
    def train_ids(directory: str, seed: int) -> list[str]:
        return prepare_files(tmp_path / directory, text=str(text_files["text"]), seed=seed).split("train")[
            "id"
        ]

    first = train_ids("a", 0)
    assert first == train_ids("b", 0)
    assert first != train_ids("c", 2)


def test_split_column_replaces_the_random_split(text_files: dict[str, Path], tmp_path: Path) -> None:
    out = prepare_files(
        tmp_path / "o", text=text_files["text"], labels=text_files["labels"], split_column="split"
    )
    assert out.split("test")["id"] == ["s03"] and len(out.split("train")) == 9
    assert "split" not in out.split("train").column_names and out.info.columns.keys() == {"topic"}


def test_fasta_files_become_a_protein_dataset(protein_fasta: Path, tmp_path: Path) -> None:
    out = prepare_files(
        tmp_path / "p", fasta=protein_fasta, name="sample", test_fraction=0.25, valid_fraction=0
    )
    assert out.info.kind == "protein" and out.info.name == "sample"
    assert out.info.splits == {"train": 90, "test": 30}
    originals = {r.id: r.sequence for r in read_fasta(protein_fasta)}
    written = read_fasta(tmp_path / "p" / "train.fasta")
    assert [r.id for r in written] == out.split("train")["id"]
    assert all(originals[r.id] == r.sequence for r in written)


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (["ident\ttext", "a\tx"], "line 1: expected the header 'id<TAB>text'"),
        (["# a comment", "id\ttext", "a\tx", "b\tx\ty"], "line 4: expected 2 tab-separated columns"),
        (["id\ttext", "a\tx", "", "a\ty"], "line 4: id 'a' repeats line 2"),
        (["id\ttext", "a\t  "], "line 2: empty text"),
        (["id\ttext"], "no records after the header"),
        ([], "no header"),
    ],
)
def test_malformed_text_tables_name_the_line(tmp_path: Path, lines: list[str], error: str) -> None:
    path = _write(tmp_path / "t.tsv", lines)
    with pytest.raises(TextTableError, match=error) as caught:
        read_text_table(path)
    assert str(path) in str(caught.value)


def test_bad_inputs_are_clear_errors(
    text_files: dict[str, Path], tmp_path: Path, protein_fasta: Path
) -> None:
    out = tmp_path / "o"
    with pytest.raises(ValueError, match="exactly one of fasta=FILE"):
        prepare_files(out)
    with pytest.raises(ValueError, match="exactly one of fasta=FILE"):
        prepare_files(out, fasta=protein_fasta, text=text_files["text"])
    with pytest.raises(FileNotFoundError, match="nope.tsv: no such file"):
        prepare_files(out, text=tmp_path / "nope.tsv")
    with pytest.raises(FastaError, match="line 1"):
        prepare_files(out, fasta=text_files["text"])
    with pytest.raises(ValueError, match="split_column='split' needs labels=FILE"):
        prepare_files(out, text=text_files["text"], split_column="split")
    with pytest.raises(ValueError, match="no column 'fold' for split_column"):
        prepare_files(out, text=text_files["text"], labels=text_files["labels"], split_column="fold")
    with pytest.raises(ValueError, match="names no 'train' split"):
        prepare_files(out, text=text_files["text"], labels=text_files["labels"], split_column="topic")
    partial = _write(tmp_path / "partial.tsv", ["id\ttopic", "s01\tanimal"])
    with pytest.raises(LabelError, match="9 records have no labels"):
        prepare_files(out, text=text_files["text"], labels=partial)
    clash = _write(tmp_path / "clash.tsv", ["id\ttext", *(f"{i}\tx" for i, _ in SENTENCES)])
    with pytest.raises(ValueError, match="label column 'text' clashes"):
        prepare_files(out, text=text_files["text"], labels=clash)
    stranger = _write(tmp_path / "stranger.tsv", ["s01\ts02", "s01\tzz"])
    with pytest.raises(GraphError, match="'zz' \\(line 2\\)"):
        prepare_files(out, text=text_files["text"], graph=stranger)
    assert not out.exists()
