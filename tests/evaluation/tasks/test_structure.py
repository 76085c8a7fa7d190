"""The knn and link tasks on a prepared dataset, with stored embeddings (a .npz, by id) and a model, and on
the command line: one evaluation path for synthetic and prepared data alike."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from seqstruct.cli import main
from seqstruct.data.graph import Graph
from seqstruct.data.prepared import DatasetInfo, write_prepared
from seqstruct.evaluation.methods import StoredEmbeddings, build_method
from seqstruct.evaluation.run import run_task
from seqstruct.models.embed import save_embeddings

IDS = [f"n{i:05d}" for i in range(8)]
FAMILY = ["F1", "F1", "F1", "F1", "F2", "F2", "F2", "F2"]
HELDOUT = ("n00003", "n00007")
TRAIN_EDGES = [(0, 1), (1, 2), (4, 5), (5, 6)]
HELDOUT_EDGES = [(3, 0), (3, 2), (7, 4), (7, 6)]


def _dataset(directory: Path, listed: str | None = None, derived: bool = False) -> Path:
    """8 proteins in two families; n00003 and n00007 are held out (edges only in graph_heldout.tsv).
    listed: heldout_nodes.txt's text instead of the one written; derived: no heldout_nodes.txt."""
    sequences = ["MKTAYIAKQR", "MKTAYIAKQL", "MKTAYLAKQR", "MKSAYIAKQR"] + ["GGWWPPGGWW", "GGWWPPGAWW"] * 2
    sequences[6] += "C"  # keep the records distinct
    parity = ["even" if n % 2 == 0 else "odd" for n in range(8)]
    rows = list(zip(IDS, sequences, FAMILY, parity, strict=True))
    splits = {
        name: Dataset.from_dict(
            dict(zip(["id", "text", "family", "parity"], map(list, zip(*part, strict=True)), strict=True))
        )
        for name, part in (
            ("train", [r for r in rows if r[0] not in HELDOUT]),
            ("heldout", [r for r in rows if r[0] in HELDOUT]),
        )
    }
    edges = np.array(TRAIN_EDGES + HELDOUT_EDGES, dtype=np.int64)
    graph = Graph(tuple(IDS), np.sort(edges, axis=1), np.ones(len(edges), dtype=np.float32))
    columns = {"family": "protein family", "parity": "even or odd index"}
    info = DatasetInfo(name="families", kind="protein", recipe="test", config={}, columns=columns)
    write_prepared(directory, info, splits, graph=graph)
    if derived:
        (directory / "heldout_nodes.txt").unlink()
    if listed is not None:
        (directory / "heldout_nodes.txt").write_text(listed, encoding="utf-8")
    return directory


def _family_embeddings() -> np.ndarray:
    """[8, 2]: F1 near (1, 0), F2 near (0, 1), a little spread so rankings have no ties."""
    return np.array([[1, 0.1 * i] if f == "F1" else [0.1 * i, 1] for i, f in enumerate(FAMILY)], dtype=float)


@pytest.fixture
def stored(tmp_path) -> Path:
    """The family embeddings with extra and shuffled ids: rows are matched to records by id."""
    order = np.array([5, 0, 7, 2, 1, 6, 3, 4])
    path = tmp_path / "emb.npz"
    embeddings = np.concatenate([_family_embeddings()[order], [[5.0, 5.0]]]).astype(np.float32)
    save_embeddings(path, [IDS[i] for i in order] + ["unused"], embeddings, pooling="cls")
    return path


def test_knn_and_link_with_stored_embeddings(tmp_path, stored) -> None:
    data = _dataset(tmp_path / "data")
    method = build_method(str(stored))
    assert isinstance(method, StoredEmbeddings) and method.describe()["pooling"] == "cls"
    knn = run_task(method, "knn", data)
    assert set(knn["metrics"]) == {"family", "parity"} and knn["metrics"]["family"]["accuracy"] == 1.0
    assert knn["counts"]["family"]["n"] == 8 and knn["counts"]["neighbours"] == 3
    link = run_task(method, "link", data)["counts"], run_task(method, "link", data)["metrics"]["heldout"]
    counts, metrics = link
    assert (counts["heldout_rule"], counts["heldout_nodes"], counts["queries"]) == ("heldout_nodes.txt", 2, 2)
    assert metrics["precision@1"] == 1.0 and metrics["recall@5"] == 1.0
    only = run_task(method, "knn", data, columns=["parity"], neighbours=2, metric="euclidean")
    assert list(only["metrics"]) == ["parity"] and only["task_options"]["metric"] == "euclidean"
    save_embeddings(tmp_path / "short.npz", IDS[2:], _family_embeddings()[2:])
    with pytest.raises(ValueError, match=r"no embedding for 2 records, 'n00000', 'n00001'"):
        run_task(build_method(str(tmp_path / "short.npz")), "knn", data)


def test_held_out_nodes_derived_or_listed(tmp_path, stored) -> None:
    method = build_method(str(stored))
    derived = run_task(method, "link", _dataset(tmp_path / "derived", derived=True))["counts"]
    assert (derived["heldout_rule"], derived["heldout_nodes"], derived["queries"]) == ("derived", 2, 2)
    listed = run_task(method, "link", _dataset(tmp_path / "listed", listed="n00003\nn00001\n"))["counts"]
    # n00001 has no held-out edge: skipped. n00003's training neighbours (none) are excluded.
    assert (listed["heldout_rule"], listed["heldout_nodes"], listed["queries"], listed["skipped"]) == (
        "heldout_nodes.txt",
        2,
        1,
        1,
    )


def test_cli_end_to_end_with_a_model(protein_model, tmp_path, capsys) -> None:
    data, out = _dataset(tmp_path / "data"), tmp_path / "out"
    argv = ["evaluate", str(protein_model), "--data", str(data), "--task", "knn", "link", "-o", str(out)]
    assert main(argv) == 0
    knn = json.loads((out / "knn.json").read_text())
    assert (knn["model"], knn["pooling"], knn["dataset"]["splits"]) == (
        str(protein_model),
        "mean",
        {"train": 6, "heldout": 2},
    )
    for column, metrics in knn["metrics"].items():
        assert 0.0 <= metrics["accuracy"] <= 1.0 and knn["counts"][column]["n"] == 8
    link = json.loads((out / "link.json").read_text())
    assert link["counts"]["queries"] == 2 and 0.0 < link["metrics"]["heldout"]["mrr"] <= 1.0
    assert link["wall_seconds"] > 0
    assert (
        (out / "knn.md").read_text().splitlines()[0].startswith("| model | mode | seeds | family accuracy |")
    )
    printed = capsys.readouterr().out
    assert f"knn [{protein_model}, probe] family: accuracy" in printed and "heldout: mrr" in printed


def test_cli_with_embeddings_npz(tmp_path, stored, capsys) -> None:
    data, out = _dataset(tmp_path / "data"), tmp_path / "out"
    argv = ["evaluate", str(stored), "--data", str(data), "--task", "knn", "--label", "family", "--k", "2"]
    assert main([*argv, "-o", str(out)]) == 0
    result = json.loads((out / "knn.json").read_text())
    assert (result["pooling"], list(result["metrics"])) == ("cls", ["family"])
    assert result["metrics"]["family"]["accuracy"] == 1.0 and result["task_options"]["neighbours"] == 2
    assert main([*argv[:-3], "nope"]) == 2
    assert "has no column 'nope'" in capsys.readouterr().err
    # stored vectors are of records: a query text has none
    assert main(["evaluate", str(stored), "--data", str(data), "--task", "go-synonym-search"]) == 2
    assert "reads a text dataset" in capsys.readouterr().err
