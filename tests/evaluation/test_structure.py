from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from seqstruct.data.fasta import FastaRecord, write_fasta
from seqstruct.evaluation.structure import (
    evaluate_embeddings,
    knn_loo,
    knn_vote,
    link_retrieval,
    nearest_neighbours,
    top_k,
    vote_auroc,
)


def _line(*xs: float) -> np.ndarray:
    """Points on the x axis of the plane: [N, 2]."""
    return np.array([[x, 0.0] for x in xs])


# Six points on a line, worked by hand with Euclidean distance (k=3):
#   node:   0  1  2  3  4  5
#   x:      0  1  2  5  6  8
#   label:  A  A  B  C  B  B
# neighbours (nearest first, equal distances in index order) and the vote:
#   0: 1 2 3 (A B C)  three-way tie; summed similarity A -1, B -2, C -5        -> A  right
#   1: 0 2 3 (A B C)  tie; sums A -1, B -1, C -4; A, B still tied, nearest is 0 -> A  right
#   2: 1 0 3 (A A C)                                                            -> A  wrong
#   3: 4 2 5 (B B B)  (2 and 5 both at distance 3)                              -> B  wrong
#   4: 3 5 2 (C B B)                                                            -> B  right
#   5: 4 3 2 (B C B)                                                            -> B  right
LINE = _line(0, 1, 2, 5, 6, 8)
LINE_LABELS = np.array(["A", "A", "B", "C", "B", "B"])


def test_nearest_neighbours_by_hand() -> None:
    indices, sims = nearest_neighbours(LINE, 3, metric="euclidean")
    assert indices.tolist() == [[1, 2, 3], [0, 2, 3], [1, 0, 3], [4, 2, 5], [3, 5, 2], [4, 3, 2]]
    np.testing.assert_allclose(sims[0], [-1, -2, -5])


def test_knn_loo_by_hand() -> None:
    result = knn_loo(LINE, LINE_LABELS, k=3, metric="euclidean")
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["chance"] == pytest.approx(3 / 6)
    assert (result["n"], result["classes"], result["singletons"], result["auroc_classes"]) == (6, 3, 1, 2)
    # Vote fractions (A, B): 0 (1/3, 1/3), 1 (1/3, 1/3), 2 (2/3, 0), 3 (0, 1), 4 (0, 2/3), 5 (0, 2/3).
    # A vs rest: positives 0, 1 at 1/3 beat 3 of the 4 negatives (0, 0, 0; not 2/3) -> 6/8.
    # B vs rest: positives 2, 4, 5 at 0, 2/3, 2/3 against 1/3, 1/3, 1 -> (0 + 2 + 2)/9.
    # C has one member and is left out of the macro average.
    assert result["auroc"] == pytest.approx((6 / 8 + 4 / 9) / 2)


def test_perfect_embeddings_score_one() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 10
    labels = np.repeat(np.arange(4), 5)
    x = centres[labels] + rng.normal(size=(20, 8)) * 0.01  # [20, 8] tight clusters
    result = knn_loo(x, labels.astype(str), k=3)
    assert (result["accuracy"], result["auroc"], result["chance"]) == (1.0, 1.0, 0.25)
    # Each node's cluster mates are its links: the first hit is always first, and the top 4 are all hits.
    members = [np.flatnonzero(labels == labels[i]) for i in range(20)]
    links = link_retrieval(x, np.arange(20), members, ks=(1, 4))
    assert (links["mrr"], links["ndcg@10"], links["precision@4"], links["recall@4"]) == (1.0, 1.0, 1.0, 1.0)
    assert links["queries"] == 20


def test_two_classes_and_one_class() -> None:
    x = _line(0, 1, 2, 10, 11, 12)
    two = knn_loo(x, np.array(["a", "a", "a", "b", "b", "b"]), k=3, metric="euclidean")
    # Nodes 2 and 3 see 2 of their own class and 1 of the other: all right; AUROC 1 for both classes.
    assert (two["accuracy"], two["auroc"], two["auroc_classes"]) == (1.0, 1.0, 2)
    one = knn_loo(x, np.array(["a"] * 6), k=3)
    assert (one["accuracy"], one["auroc"], one["chance"]) == (1.0, None, 1.0)


def test_vote_and_auroc_match_plain_references() -> None:
    rng = np.random.default_rng(2)
    n, k, c = 300, 5, 7
    y = rng.integers(0, c, size=n)
    neighbour_classes = rng.integers(0, c, size=(n, k))
    # Few distinct similarities, so that ties in the summed similarity really happen.
    similarities = -np.sort(rng.integers(0, 3, size=(n, k)), axis=1).astype(float)
    predicted = knn_vote(neighbour_classes, similarities)
    for row, classes in enumerate(neighbour_classes):
        votes = {cls: (classes == cls).sum() for cls in classes}
        sums = {cls: similarities[row][classes == cls].sum() for cls in classes}
        best = max(votes[cls] for cls in classes)
        tied = [cls for cls in classes if votes[cls] == best]
        top = max(sums[cls] for cls in tied)
        expected = next(cls for cls in classes if cls in tied and sums[cls] == top)
        assert predicted[row] == expected
    fractions = np.stack([(neighbour_classes == cls).mean(axis=1) for cls in range(c)], axis=1)  # [N, C]
    expected = [roc_auc_score(y == cls, fractions[:, cls]) for cls in range(c)]
    np.testing.assert_allclose(vote_auroc(neighbour_classes, y, np.arange(c)), expected, atol=1e-12)


def test_cosine_and_euclidean_differ() -> None:
    x = np.array([[1.0, 0.0], [10.0, 0.0], [1.0, 1.0]])
    # Node 0: (10, 0) points the same way (cosine 1) but is 9 away; (1, 1) is 1 away at 45 degrees.
    assert nearest_neighbours(x, 1, metric="cosine")[0][0].tolist() == [1]
    assert nearest_neighbours(x, 1, metric="euclidean")[0][0].tolist() == [2]
    # Cosine ignores length: scaling a node changes nothing; it changes Euclidean neighbours.
    scaled = x * np.array([[1.0], [0.05], [1.0]])
    assert nearest_neighbours(scaled, 1, metric="cosine")[0][0].tolist() == [1]
    assert nearest_neighbours(scaled, 1, metric="euclidean")[0][0].tolist() == [1]
    with pytest.raises(ValueError, match="unknown metric"):
        nearest_neighbours(x, 1, metric="dot")


def test_top_k_orders_ties_by_index_across_the_cut() -> None:
    sims = np.array([[0.5, 1.0, 0.5, 0.5, 0.0], [-np.inf, 0.2, 0.2, 0.2, 0.2]])
    indices, values = top_k(sims, 2)
    assert indices.tolist() == [[1, 0], [1, 2]]
    np.testing.assert_array_equal(values, [[1.0, 0.5], [0.2, 0.2]])
    assert top_k(sims, 5)[0].tolist() == [[1, 0, 2, 3, 4], [1, 2, 3, 4, 0]]


def test_link_retrieval_by_hand() -> None:
    #   node: 0  1  2  3   4   5
    #   x:    0  1  3  6  10  15
    x = _line(0, 1, 3, 6, 10, 15)
    queries = np.array([0, 3, 5, 4])
    relevant = [np.array([2, 4]), np.array([5, 2]), np.array([5]), np.array([3, 5])]
    exclude = [np.array([], dtype=np.int64), np.array([2]), np.array([], dtype=np.int64), np.array([])]
    result = link_retrieval(x, queries, relevant, ks=(1, 3), exclude=exclude, metric="euclidean")
    # Query 0 ranks 1 2 3 4 5: hits at ranks 2 and 4.
    # Query 3 without 2 (excluded, so not relevant either) ranks 4 1 0 5: its one hit, 5, at rank 4.
    # Query 5's only relevant node is itself: skipped.
    # Query 4 ranks 3 5 2 1 0: hits at ranks 1 and 2.
    assert (result["queries"], result["skipped"]) == (3, 1)
    assert result["mrr"] == pytest.approx((1 / 2 + 1 / 4 + 1) / 3)
    d = [1 / math.log2(r + 1) for r in range(1, 6)]  # discount of ranks 1..5
    ndcg = [(d[1] + d[3]) / (d[0] + d[1]), d[3] / d[0], 1.0]
    assert result["ndcg@10"] == pytest.approx(sum(ndcg) / 3)
    assert result["precision@1"] == pytest.approx((0 + 0 + 1) / 3)
    assert result["recall@1"] == pytest.approx((0 + 0 + 1 / 2) / 3)
    assert result["precision@3"] == pytest.approx((1 / 3 + 0 + 2 / 3) / 3)
    assert result["recall@3"] == pytest.approx((1 / 2 + 0 + 1) / 3)


def test_query_is_never_its_own_hit() -> None:
    # Node 0 and its duplicate, node 1, are equally near node 0; only node 1 may be found.
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    result = link_retrieval(x, np.array([0]), [np.array([0, 3])], ks=(1, 2))
    # Ranking of 0: 1 (cosine 1), 3, 2; the relevant ones are {3} once 0 itself is dropped.
    assert result["mrr"] == pytest.approx(1 / 2)
    assert (result["precision@1"], result["recall@2"]) == (0.0, 1.0)
    none = link_retrieval(x, np.array([0]), [np.array([0])])
    assert (none["queries"], none["skipped"], none["mrr"]) == (0, 1, None)


def test_blocked_equals_unblocked() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(57, 6))
    labels = rng.integers(0, 4, size=57).astype(str)
    for metric in ("cosine", "euclidean"):
        small = nearest_neighbours(x, 5, metric=metric, block_size=4)
        whole = nearest_neighbours(x, 5, metric=metric, block_size=1000)
        np.testing.assert_array_equal(small[0], whole[0])
        np.testing.assert_allclose(small[1], whole[1], rtol=0, atol=1e-12)
        assert knn_loo(x, labels, metric=metric, block_size=3) == knn_loo(x, labels, metric=metric)
        queries = np.arange(0, 57, 2)
        relevant = [rng.choice(57, size=3, replace=False) for _ in queries]
        exclude = [rng.choice(57, size=2, replace=False) for _ in queries]
        args = (x, queries, relevant, (1, 5, 10), exclude, metric)
        assert link_retrieval(*args, block_size=5) == link_retrieval(*args, block_size=1000)


# ---------------------------------------------------------------------------------------------------
# A dataset directory, and the command line
# ---------------------------------------------------------------------------------------------------

IDS = [f"n{i:05d}" for i in range(8)]
FAMILY = ["F1", "F1", "F1", "F1", "F2", "F2", "F2", "F2"]


def _dataset(directory: Path, heldout_list: bool = False) -> Path:
    """8 proteins in two families; n00003 and n00007 are held out (edges only in graph_heldout.tsv)."""
    directory.mkdir(parents=True, exist_ok=True)
    sequences = ["MKTAYIAKQR", "MKTAYIAKQL", "MKTAYLAKQR", "MKSAYIAKQR"] + ["GGWWPPGGWW", "GGWWPPGAWW"] * 2
    sequences[6] += "C"  # keep the records distinct
    write_fasta(
        [FastaRecord(i, "", s) for i, s in zip(IDS, sequences, strict=True)], directory / "sequences.fasta"
    )
    labels = "".join(
        f"{i}\t{f}\t{'even' if n % 2 == 0 else 'odd'}\n"
        for n, (i, f) in enumerate(zip(IDS, FAMILY, strict=True))
    )
    (directory / "labels.tsv").write_text("id\tfamily\tparity\n" + labels, encoding="utf-8")
    (directory / "graph.tsv").write_text(
        "n00000\tn00001\nn00001\tn00002\nn00004\tn00005\nn00005\tn00006\n", encoding="utf-8"
    )
    (directory / "graph_heldout.tsv").write_text(
        "n00003\tn00000\nn00003\tn00002\nn00007\tn00004\nn00007\tn00006\n", encoding="utf-8"
    )
    (directory / "dataset.json").write_text("{}", encoding="utf-8")
    if heldout_list:
        (directory / "heldout_nodes.txt").write_text("n00003\nn00001\n", encoding="utf-8")
    return directory


def _family_embeddings() -> np.ndarray:
    """[8, 2]: F1 near (1, 0), F2 near (0, 1), a little spread so rankings have no ties."""
    return np.array([[1, 0.1 * i] if f == "F1" else [0.1 * i, 1] for i, f in enumerate(FAMILY)], dtype=float)


def test_evaluate_embeddings_on_a_dataset_dir(tmp_path) -> None:
    data = _dataset(tmp_path / "data")
    x = _family_embeddings()
    # Extra and shuffled ids are fine: rows are matched to the FASTA by id.
    order = np.array([5, 0, 7, 2, 1, 6, 3, 4])
    ids = [IDS[i] for i in order] + ["unused"]
    embeddings = np.concatenate([x[order], [[5.0, 5.0]]])
    result = evaluate_embeddings(ids, embeddings, data)
    assert result["n"] == 8
    assert set(result["knn"]) == {"family", "parity"}
    assert result["knn"]["family"]["accuracy"] == 1.0
    link = result["link"]
    assert (link["heldout_rule"], link["heldout_nodes"], link["queries"]) == ("derived", 2, 2)
    assert link["precision@1"] == 1.0 and link["recall@5"] == 1.0
    only = evaluate_embeddings(ids, embeddings, data, tasks=["knn"], label_columns=["parity"])
    assert list(only) == ["n", "knn"] and list(only["knn"]) == ["parity"]
    with pytest.raises(ValueError, match=r"without an embedding, 2: 'n00000', 'n00001'"):
        evaluate_embeddings(IDS[2:], x[2:], data)


def test_heldout_nodes_file_takes_precedence(tmp_path) -> None:
    data = _dataset(tmp_path / "data", heldout_list=True)
    link = evaluate_embeddings(IDS, _family_embeddings(), data, tasks=["link"])["link"]
    # n00001 has no held-out edge: skipped. n00003's training neighbours (none) are excluded.
    assert (link["heldout_rule"], link["heldout_nodes"], link["queries"], link["skipped"]) == (
        "heldout_nodes.txt",
        2,
        1,
        1,
    )


def test_cli_end_to_end_with_a_model(protein_model, tmp_path, capsys) -> None:
    from seqstruct.cli import main

    data, out = _dataset(tmp_path / "data"), tmp_path / "out"
    argv = ["evaluate", str(protein_model), "--data", str(data), "--task", "knn", "link", "-o", str(out)]
    assert main(argv) == 0
    result = json.loads((out / "evaluation.json").read_text())
    assert (result["model"], result["pooling"], result["tasks"], result["n"]) == (
        str(protein_model),
        "mean",
        ["knn", "link"],
        8,
    )
    assert set(result["knn"]) == {"family", "parity"}
    for metrics in result["knn"].values():
        assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["n"] == 8
    assert result["link"]["queries"] == 2 and 0.0 < result["link"]["mrr"] <= 1.0
    assert result["wall_seconds"] > 0
    table = (out / "evaluation.md").read_text()
    assert "| knn | family |" in table and "| link |" in table
    printed = capsys.readouterr().out
    assert "knn family: accuracy" in printed and "link: MRR" in printed


def test_cli_with_embeddings_npz(tmp_path, capsys) -> None:
    from seqstruct.cli import main
    from seqstruct.embed import save_embeddings

    data, out = _dataset(tmp_path / "data"), tmp_path / "out"
    save_embeddings(tmp_path / "emb.npz", IDS, _family_embeddings().astype(np.float32), pooling="cls")
    argv = ["evaluate", str(tmp_path / "emb.npz"), "--data", str(data), "--task", "knn", "--label", "family"]
    assert main([*argv, "-o", str(out)]) == 0
    result = json.loads((out / "evaluation.json").read_text())
    assert (result["pooling"], list(result["knn"]), "link" in result) == ("cls", ["family"], False)
    assert result["knn"]["family"]["accuracy"] == 1.0
    assert main([*argv[:-1], "nope"]) == 2
    assert "no label column 'nope'" in capsys.readouterr().err
