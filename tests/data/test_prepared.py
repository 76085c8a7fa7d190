"""The prepared-dataset layout: writing, reading, the graph cut along train, recipes and their options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from seqstruct.data import prepared
from seqstruct.data.fasta import read_fasta
from seqstruct.data.graph import Graph, read_edge_list
from seqstruct.data.prepared import (
    DatasetInfo,
    degree_stats,
    load_prepared,
    prepare,
    recipe_options,
    register_recipe,
    split_graph,
    write_prepared,
)

NODES = ("a", "b", "c", "d", "e")


def _graph(pairs: list[tuple[int, int]]) -> Graph:
    edges = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return Graph(NODES, edges, np.ones(len(edges), dtype=np.float32))


def _splits() -> dict[str, Dataset]:
    return {
        "train": Dataset.from_dict(
            {"id": ["a", "b", "c"], "text": ["x", "y", "z"], "label": ["p", "q", "p"]}
        ),
        "valid": Dataset.from_dict({"id": ["d"], "text": ["w"], "label": ["q"]}),
        "test": Dataset.from_dict({"id": ["e"], "text": ["v"], "label": ["p"]}),
    }


def _info(kind: str = "text") -> DatasetInfo:
    return DatasetInfo(name="toy", kind=kind, recipe="toy", config={"seed": 0}, columns={"label": "a class"})


def test_split_graph_keeps_train_edges_and_names_the_outside_ends() -> None:
    # a-b, b-c inside train {a, b, c}; c-d and d-e touch d and e, which are outside.
    graph = _graph([(0, 1), (1, 2), (2, 3), (3, 4)])
    inside, outside, heldout = split_graph(graph, ["a", "b", "c"])
    assert inside.edges.tolist() == [[0, 1], [1, 2]]
    assert outside.edges.tolist() == [[2, 3], [3, 4]]
    assert heldout == ["d", "e"]
    assert inside.nodes == ("a", "b", "c")  # induced on train: degree statistics describe train alone
    assert outside.nodes == NODES


def test_degree_stats_by_hand() -> None:
    # Edges a-b, a-c, a-d: degrees a 3, b 1, c 1, d 1, e 0.
    stats = degree_stats(_graph([(0, 1), (0, 2), (0, 3)]))
    assert stats["nodes"] == 5 and stats["edges"] == 3 and stats["isolated"] == 1
    assert stats["degree_min"] == 0 and stats["degree_max"] == 3
    assert stats["degree_median"] == 1.0 and stats["degree_mean"] == pytest.approx(6 / 5)


def test_write_then_load_round_trips_splits_graph_and_card(tmp_path: Path) -> None:
    graph = _graph([(0, 1), (1, 2), (2, 3)])
    out = write_prepared(tmp_path / "toy", _info(), _splits(), graph, method="By hand.")
    again = load_prepared(tmp_path / "toy")
    assert again.info == out.info
    assert again.info.splits == {"train": 3, "valid": 1, "test": 1}
    assert again.split("train")["label"] == ["p", "q", "p"]
    training, _ = read_edge_list(again.graph_path, NODES)
    assert training.edges.tolist() == [[0, 1], [1, 2]]
    heldout, _ = read_edge_list(again.heldout_graph_path, NODES)
    assert heldout.edges.tolist() == [[2, 3]]
    assert (tmp_path / "toy" / "heldout_nodes.txt").read_text() == "d\n"
    meta = json.loads((tmp_path / "toy" / "dataset.json").read_text())
    assert meta["graph"]["heldout_edges"] == 1 and meta["graph"]["train"]["edges"] == 2
    readme = (tmp_path / "toy" / "README.md").read_text()
    assert "| train | 3 |" in readme and "By hand." in readme and "`label`" in readme
    assert not (tmp_path / "toy" / "train.fasta").exists()  # text datasets have none
    with pytest.raises(KeyError, match="no split 'test_remote'"):
        again.split("test_remote")


def test_protein_datasets_get_the_train_split_as_fasta(tmp_path: Path) -> None:
    splits = {
        "train": Dataset.from_dict({"id": ["p1", "p2"], "text": ["MKV", "MAAL"]}),
        "test_remote": Dataset.from_dict({"id": ["p3"], "text": ["MW"]}),
    }
    write_prepared(tmp_path / "prot", _info("protein"), splits)
    records = read_fasta(tmp_path / "prot" / "train.fasta")
    assert [(r.id, r.sequence) for r in records] == [("p1", "MKV"), ("p2", "MAAL")]
    assert not (tmp_path / "prot" / "graph.tsv").exists()


@pytest.mark.parametrize(
    ("splits", "kind", "message"),
    [
        ({"valid": Dataset.from_dict({"id": ["a"], "text": ["x"]})}, "text", "needs a 'train' split"),
        ({"train": Dataset.from_dict({"id": ["a"]})}, "text", r"lacks columns \['text'\]"),
        (
            {
                "train": Dataset.from_dict({"id": ["a"], "text": ["x"]}),
                "test": Dataset.from_dict({"id": ["a"], "text": ["y"]}),
            },
            "text",
            "id 'a' is in split 'train' and in 'test'",
        ),
        ({"train": Dataset.from_dict({"id": ["a"], "text": ["x"]})}, "image", "kind must be one of"),
    ],
)
def test_bad_splits_are_refused(tmp_path: Path, splits: dict, kind: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_prepared(tmp_path / "bad", _info(kind), splits)
    assert not (tmp_path / "bad").exists()


def test_an_existing_directory_is_kept_unless_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "toy"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        write_prepared(target, _info(), _splits())
    assert (target / "mine.txt").read_text() == "keep me"
    write_prepared(target, _info(), _splits(), overwrite=True)
    assert not (target / "mine.txt").exists() and load_prepared(target).info.splits["train"] == 3


def test_a_failed_write_leaves_no_directory_and_no_staging(tmp_path: Path) -> None:
    splits = {"train": Dataset.from_dict({"id": ["p1"], "text": ["not a protein!"]})}
    with pytest.raises(ValueError, match="p1"):
        write_prepared(tmp_path / "prot", _info("protein"), splits)
    assert [p.name for p in tmp_path.iterdir()] == [".prot.lock"]  # the lock file stays, empty
    assert (tmp_path / ".prot.lock").read_text() == ""


def test_an_overwrite_that_fails_keeps_the_old_dataset_whole(tmp_path: Path) -> None:
    target = tmp_path / "toy"
    write_prepared(target, _info(), _splits())
    before = {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()}

    def fail(directory: Path) -> None:
        raise OSError("disk full (simulated)")

    with pytest.raises(OSError, match="simulated"):
        write_prepared(target, _info(), _splits(), overwrite=True, write_extra=fail)
    after = {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before and sorted(p.name for p in tmp_path.iterdir()) == [".toy.lock", "toy"]


def test_a_dataset_set_aside_by_a_killed_swap_is_put_back(tmp_path: Path) -> None:
    """Killed between swap_in's two renames: the old dataset is aside and a staging directory (maybe half
    written) beside it. The next writer to take the lock puts the old one back and removes the staging."""
    target = tmp_path / "toy"
    write_prepared(target, _info(), _splits())
    target.rename(tmp_path / ".toy.old-abc123")
    (tmp_path / ".toy.partial-def456" / "splits").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        write_prepared(target, _info(), _splits())  # the old dataset is back, and not replaced
    assert load_prepared(target).info.splits == {"train": 3, "valid": 1, "test": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".toy.lock", "toy"]


def test_a_dataset_being_written_by_another_process_is_refused(tmp_path: Path) -> None:
    from seqstruct.io import DirectoryBusy, DirectoryLock

    target = tmp_path / "toy"
    with DirectoryLock.beside(target), pytest.raises(DirectoryBusy, match=f"{target} is being written by"):
        write_prepared(target, _info(), _splits())
    assert not target.exists()


def test_load_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a prepared dataset"):
        load_prepared(tmp_path)


@pytest.fixture
def toy_recipe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict]:
    """A recipe `toy` in a registry of its own, the default root under tmp_path; returns the calls it
    received."""
    monkeypatch.setattr(prepared, "RECIPES", {})
    monkeypatch.setattr(prepared, "DEFAULT_ROOT", tmp_path / "prepared")
    monkeypatch.setattr(prepared, "_load_builtin_recipes", lambda: None)
    calls: list[dict] = []

    @register_recipe("toy")
    def toy(output: Path, overwrite: bool = False, *, name: str = "", seed: int = 0, fraction: float = 0.1):
        """A toy recipe."""
        calls.append(
            {"output": output, "overwrite": overwrite, "name": name, "seed": seed, "fraction": fraction}
        )

    return calls


def test_prepare_passes_options_and_the_default_output(toy_recipe: list[dict]) -> None:
    prepare("toy", seed=3, fraction=0)
    assert toy_recipe == [
        {"output": prepared.DEFAULT_ROOT / "toy", "overwrite": False, "name": "", "seed": 3, "fraction": 0.0}
    ]
    assert isinstance(toy_recipe[0]["fraction"], float)


def test_prepare_brings_yaml_scalars_to_the_option_types(toy_recipe: list[dict], tmp_path: Path) -> None:
    prepare("toy", tmp_path / "out", overwrite=True, name=2024)
    prepare("toy", tmp_path / "out", name=None)
    assert [call["name"] for call in toy_recipe] == ["2024", ""]
    assert toy_recipe[0]["overwrite"] is True and toy_recipe[0]["output"] == tmp_path / "out"


def test_prepare_refuses_a_full_output_before_the_recipe_runs(toy_recipe: list[dict], tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        prepare("toy", tmp_path / "out")
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file; a prepared dataset is a directory"):
        prepare("toy", tmp_path / "file", overwrite=True)
    assert toy_recipe == []  # no recipe work was spent on an output that cannot be written


def test_prepare_refuses_unknown_options_listing_the_known_ones(toy_recipe: list[dict]) -> None:
    with pytest.raises(ValueError, match=r"no option sed; its options are name='', seed=0, fraction=0.1"):
        prepare("toy", sed=1)
    with pytest.raises(ValueError, match=r"seed=0.5 should be a int"):
        prepare("toy", seed=0.5)
    with pytest.raises(ValueError, match=r"unknown dataset recipe 'nope'; expected one of \['toy'\]"):
        prepare("nope")
    assert toy_recipe == []


def test_recipe_options_and_duplicate_names(toy_recipe: list[dict]) -> None:
    assert recipe_options(prepared.RECIPES["toy"]) == {"name": "", "seed": 0, "fraction": 0.1}
    with pytest.raises(ValueError, match="already registered"):
        register_recipe("toy")(lambda output, overwrite=False: None)
