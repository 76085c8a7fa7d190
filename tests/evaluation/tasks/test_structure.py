"""The knn and link tasks on a prepared dataset, with stored embeddings (a .npz, by id) and a model, and on
the command line: one evaluation path for synthetic and prepared data alike. Then both tasks with stand-in
methods whose vectors are known (topic one-hots, positions along each class's chain)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from seqstruct.cli import main
from seqstruct.data.graph import Graph
from seqstruct.data.prepared import DatasetInfo, Prepared, write_prepared
from seqstruct.evaluation.methods import StoredEmbeddings, build_method
from seqstruct.evaluation.run import run_task
from seqstruct.evaluation.tasks import get_task
from seqstruct.models.embed import save_embeddings
from tests.evaluation.tasks.datasets import PROTEIN_CLASSES, TOPICS, StandIn

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


# ---------------------------------------------------------------------------------------------------
# The knn and link tasks with stand-in methods whose vectors are known
# ---------------------------------------------------------------------------------------------------


def _topic_vectors(texts: Sequence[str]) -> np.ndarray:
    """One-hot of the topic whose words a text of text_dataset uses."""
    return np.array([[float(any(w in t.split() for w in words)) for words in TOPICS.values()] for t in texts])


def test_knn_classifier_judges_the_embedding_without_the_methods_classifier(texts) -> None:
    calls: list[list[str]] = []

    def recorded(batch: Sequence[str]) -> np.ndarray:
        calls.append(list(batch))
        return _topic_vectors(batch)

    def no_classify(problem, split):
        raise AssertionError("kNN must not ask the method to classify")

    method = StandIn(score=no_classify, vectors=recorded)
    result = get_task("wordnet-supersense").run(texts, method, 0, classifier="knn", neighbours=3)
    assert result.metrics == {"test": {"knn_accuracy": 1.0, "knn_macro_f1": 1.0}}
    assert result.counts["classifier"] == "knn" and result.counts["neighbours"] == 3
    # train and test embedded together, in one call (valid is not used)
    train, test = texts.split("train")["text"], texts.split("test")["text"]
    assert calls == [list(train) + list(test)]

    # every text the same vector: all train rows tie at cosine 1 and come in corpus order, rows 0, 1, 2,
    # one of each topic; the tied vote goes to the lower class index, binding: a third of the test rows
    flat = StandIn(vectors=lambda batch: np.tile([1.0, 0.0, 0.0], (len(batch), 1)))
    result = get_task("wordnet-supersense").run(texts, flat, 0, classifier="knn", neighbours=3)
    assert result.metrics["test"]["knn_accuracy"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match=r"classifier must be one of \('probe', 'knn'\)"):
        get_task("go-category").run(texts, method, 0, classifier="svm")


def test_knn_on_tfidf_vectors(texts) -> None:
    # a test row shares its two topic words with train rows of its topic only
    result = get_task("go-category").run(texts, build_method("baseline:tfidf"), 0, classifier="knn")
    assert result.metrics["test"]["knn_accuracy"] == 1.0
    assert result.counts["rows"]["test"] == 5  # row 5 has no top_level


def _chains(data: Prepared) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """(ids in dataset order, text -> (class, position in its class's chain)), as protein_dataset built them."""
    ids, texts = [], []
    for split in data.splits:
        ids += data.split(split)["id"]
        texts += data.split(split)["text"]
    place, seen = {}, {name: 0 for name in PROTEIN_CLASSES}
    for node, text in zip(ids, texts, strict=True):
        name = list(PROTEIN_CLASSES)[int(node.lstrip("abcdefghijklmnopqrstuvwxyz_")) % 3]
        place[text] = (list(PROTEIN_CLASSES).index(name), seen[name])
        seen[name] += 1
    return ids, place


def test_protein_link_with_chain_vectors(proteins) -> None:
    ids, place = _chains(proteins)

    def along_chain(texts: Sequence[str]) -> np.ndarray:  # a class's chain on an arc of its own plane
        out = np.zeros((len(texts), 6))
        for row, text in enumerate(texts):
            c, position = place[text]
            out[row, 2 * c : 2 * c + 2] = np.cos(0.05 * position), np.sin(0.05 * position)
        return out

    result = get_task("protein-link").run(proteins, StandIn(vectors=along_chain), 0)
    metrics = result.metrics["heldout"]
    # the nearest proteins are a query's chain neighbours, and those are its held-out links
    assert metrics["mrr"] == pytest.approx(1.0) and metrics["precision@1"] == pytest.approx(1.0)
    assert metrics["recall@10"] == pytest.approx(1.0)
    heldout = (proteins.path / "heldout_nodes.txt").read_text().split()
    assert result.counts["queries"] == len(heldout) == 27  # every non-train protein has a chain edge
    assert result.counts["candidates"] == 56

    # candidates=heldout ranks only the non-train proteins; chain neighbours in train no longer count
    seen: list[str] = []

    def recorded(texts: Sequence[str]) -> np.ndarray:
        seen.extend(texts)
        return along_chain(texts)

    small = get_task("protein-link").run(proteins, StandIn(vectors=recorded), 0, candidates="heldout")
    outside = [t for s in proteins.splits if s != "train" for t in proteins.split(s)["text"]]
    assert sorted(seen) == sorted(outside) and small.counts["candidates"] == len(outside) - 1
    assert small.counts["candidate_pool"] == "heldout"
    assert small.counts["queries"] + small.counts["skipped"] == 27
    assert small.metrics["heldout"]["mrr"] == pytest.approx(1.0)  # nearest held-out chain neighbours

    # candidates=both: one embedding of every record, scored as "all" and as "heldout"
    seen.clear()
    noisy = np.random.default_rng(0).normal(size=(len(ids), 6))  # not a perfect space: the pools differ
    row_of = {text: i for i, text in enumerate(t for s in proteins.splits for t in proteins.split(s)["text"])}

    def noisy_chain(texts: Sequence[str]) -> np.ndarray:
        seen.extend(texts)
        return along_chain(texts) + 0.4 * noisy[[row_of[t] for t in texts]]

    both = get_task("protein-link").run(proteins, StandIn(vectors=noisy_chain), 0, candidates="both")
    assert len(seen) == len(ids)  # embedded once
    alone = {
        pool: get_task("protein-link").run(proteins, StandIn(vectors=noisy_chain), 0, candidates=pool)
        for pool in ("all", "heldout")
    }
    assert both.metrics["heldout"] == pytest.approx(alone["all"].metrics["heldout"])
    assert both.metrics["heldout-pool"] == pytest.approx(alone["heldout"].metrics["heldout"])
    assert both.metrics["heldout"]["mrr"] != pytest.approx(both.metrics["heldout-pool"]["mrr"])
    assert both.counts["heldout"]["candidates"] == 56
    assert both.counts["heldout-pool"]["candidates"] == len(outside) - 1
    assert both.counts["candidate_pool"] == "both"
    with pytest.raises(ValueError, match="candidates must be"):
        get_task("protein-link").run(proteins, StandIn(vectors=recorded), 0, candidates="some")

    # all vectors equal: candidates rank in dataset order, the query left out
    flat = get_task("protein-link").run(proteins, StandIn(vectors=lambda t: np.ones((len(t), 2))), 0)
    by_text = {
        text: node
        for node, text in zip(
            ids, [t for s in proteins.splits for t in proteins.split(s)["text"]], strict=True
        )
    }
    chain = {}  # (class, position) -> index in dataset order
    for text, key in place.items():
        chain[key] = ids.index(by_text[text])
    reciprocal = []
    for node in heldout:
        q = ids.index(node)
        c, position = next(key for key, index in chain.items() if index == q)
        neighbours = [chain[(c, p)] for p in (position - 1, position + 1) if (c, p) in chain]
        reciprocal.append(max(1 / (r + 1 if r < q else r) for r in neighbours))
    assert flat.metrics["heldout"]["mrr"] == pytest.approx(np.mean(reciprocal))
