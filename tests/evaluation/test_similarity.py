"""Intrinsic IC and Lin similarity on a hand-made DAG (values computed by hand), pair sampling, and
sentence-transformers' similarity evaluator run on any embedding function (dense or sparse)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from seqstruct.data.sources.go import read_go
from seqstruct.evaluation.similarity import (
    EmbeddingFunctionModel,
    LinSimilarity,
    SimilarityPairs,
    ancestor_sets,
    cosine_agreement,
    go_lin_similarity,
    sample_pairs,
    similarity_correlations,
)
from tests.data.test_go import tiny_go  # noqa: F401  (fixture)

#        R            namespace "N": 7 terms; X alone in namespace "M"
#       / \
#      A   B          E has two parents (A and B): a DAG, not a tree
#     /|\  |
#    C D  \|
#    |     E
#    F
PARENTS = {"A": ["R"], "B": ["R"], "C": ["A"], "D": ["A"], "E": ["A", "B"], "F": ["C"]}
NAMESPACE = {t: "N" for t in "RABCDEF"} | {"X": "M"}


def ic_by_hand(descendants: int) -> float:
    return 1.0 - math.log(1 + descendants) / math.log(7)


@pytest.fixture(scope="module")
def lin() -> LinSimilarity:
    return LinSimilarity(NAMESPACE, PARENTS)


def test_ancestors_include_the_term_itself(lin) -> None:
    assert lin.ancestors["F"] == {"F", "C", "A", "R"}
    assert lin.ancestors["E"] == {"E", "A", "B", "R"}
    assert lin.ancestors["R"] == {"R"}
    with pytest.raises(ValueError, match="cycle"):
        ancestor_sets(["P"], {"P": ["Q"], "Q": ["P"]})


def test_intrinsic_information_content(lin) -> None:
    # descendants: R 6, A 4 (C D E F), B 1 (E), C 1 (F), D/E/F 0
    expected = {"R": 0.0, "A": ic_by_hand(4), "B": ic_by_hand(1), "C": ic_by_hand(1)}
    expected |= {"D": 1.0, "E": 1.0, "F": 1.0, "X": 1.0}  # leaves; X: a one-term namespace
    assert lin.ic == pytest.approx(expected)
    assert lin.ic["A"] == pytest.approx(1 - math.log(5) / math.log(7))  # 0.1729


def test_lin_similarity(lin) -> None:
    assert lin("D", "F") == pytest.approx(ic_by_hand(4))  # MICA A; both leaves: 2·IC(A)/2
    assert lin("E", "B") == pytest.approx(2 * ic_by_hand(1) / (1 + ic_by_hand(1)))  # B is E's ancestor
    assert lin("C", "F") == pytest.approx(2 * ic_by_hand(1) / (ic_by_hand(1) + 1))
    assert lin("D", "B") == 0.0  # only the root in common
    assert lin("E", "D") == pytest.approx(ic_by_hand(4))  # through A, not B
    assert lin("F", "F") == 1.0 and lin("R", "R") == 1.0
    assert lin("F", "X") == 0.0  # other namespace: nothing in common
    assert lin("D", "F") == lin("F", "D")


def test_pairs_are_deterministic_distinct_and_cover_the_range(tiny_go) -> None:  # noqa: F811
    go = read_go(tiny_go)
    lin = LinSimilarity.from_go(go)
    texts = {t.id: t.definition for t in go.terms.values() if t.definition}
    pairs = sample_pairs(lin, texts, 40, seed=3)
    assert len(pairs) == 40 and pairs.kinds.count("related") == 20
    assert sample_pairs(lin, texts, 40, seed=3) == pairs
    assert sample_pairs(lin, texts, 40, seed=4) != pairs
    keys = {tuple(sorted(p)) for p in zip(pairs.ids1, pairs.ids2, strict=True)}
    assert len(keys) == 40 and all(a != b for a, b in keys)
    for a, b, kind in zip(pairs.ids1, pairs.ids2, pairs.kinds, strict=True):
        assert go.terms[a].namespace == go.terms[b].namespace
        if kind == "related":
            near = [{p for q in [t] + go.is_a.get(t, []) for p in go.is_a.get(q, [])} for t in (a, b)]
            assert near[0] & near[1], (a, b)
    assert pairs.sentences1[0] == texts[pairs.ids1[0]]
    assert pairs.scores == [lin(a, b) for a, b in zip(pairs.ids1, pairs.ids2, strict=True)]
    assert min(pairs.scores) < 0.2 and max(pairs.scores) > 0.6


def test_pairs_stop_short_when_terms_run_out(caplog) -> None:
    lin = LinSimilarity(NAMESPACE, PARENTS)
    pairs = sample_pairs(lin, {"D": "d", "F": "f", "X": "x"}, 5, seed=0)
    assert {tuple(sorted(p)) for p in zip(pairs.ids1, pairs.ids2, strict=True)} == {("D", "F")}
    assert "asked for 5 similarity pairs" in caplog.text


def test_cosine_agreement() -> None:
    a = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    b = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, -1.0]])
    summary = cosine_agreement(a, b)
    assert summary["mean"] == pytest.approx(2 / 3) and summary["min"] == pytest.approx(0.0)
    assert summary["n"] == 3
    with pytest.raises(ValueError):
        cosine_agreement(a, b[:2])


# ---------------------------------------------------------------------------------------------------
# EmbeddingSimilarityEvaluator around an embedding function
# ---------------------------------------------------------------------------------------------------

VECTORS = {"a": [1.0, 0.0], "b": [2.0, 0.0], "c": [0.0, 1.0], "d": [1.0, 1.0], "e": [-1.0, 0.0]}
# pairs a-b, a-d, a-c, a-e: cosines 1, 0.7071, 0, -1 (ranks 4 3 2 1); gold 0.2, 0.9, 0.5, 0.0 (ranks 2 4 3 1)
PAIRS = SimilarityPairs(
    ids1=["A", "A", "A", "A"],
    ids2=["B", "D", "C", "E"],
    sentences1=["a", "a", "a", "a"],
    sentences2=["b", "d", "c", "e"],
    scores=[0.2, 0.9, 0.5, 0.0],
    kinds=["related"] * 4,
)


def test_correlations_of_an_embedding_function_by_hand() -> None:
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return np.array([VECTORS[t] for t in texts])

    found = similarity_correlations(EmbeddingFunctionModel(embed), PAIRS)
    # Spearman: rank differences 2, -1, -1, 0 -> 1 - 6·6 / (4·15) = 0.4
    assert found["spearman"] == pytest.approx(0.4)
    # Pearson: cosine deviations (0.8232, 0.5303, -0.1768, -1.1768), gold deviations (-0.2, 0.5, 0.1, -0.4):
    # 0.55355 / sqrt(2.375 · 0.46) = 0.52960
    assert found["pearson"] == pytest.approx(0.52960, abs=1e-5)
    assert calls == [["a", "b", "c", "d", "e"]]  # each distinct text once, in one call

    sparse = similarity_correlations(
        EmbeddingFunctionModel(lambda texts: sp.csr_matrix(embed(texts))), PAIRS
    )  # TF-IDF's form: the evaluator's cosine on torch sparse tensors
    assert sparse == pytest.approx(found)
    with pytest.raises(ValueError, match="float32 vectors of full dimension"):
        EmbeddingFunctionModel(embed).encode(["a"], precision="int8")
    with pytest.raises(ValueError, match="gave 1 vectors for 2 texts"):
        EmbeddingFunctionModel(lambda texts: np.ones((1, 2))).encode(["a", "b"])


def test_encode_normalises_dense_and_sparse_alike() -> None:
    model = EmbeddingFunctionModel(lambda texts: np.array([VECTORS[t] for t in texts]))
    dense = model.encode(["b", "d"], normalize_embeddings=True)
    np.testing.assert_allclose(dense, [[1.0, 0.0], [2**-0.5, 2**-0.5]], rtol=1e-6)
    sparse = EmbeddingFunctionModel(lambda texts: sp.csr_matrix([VECTORS[t] for t in texts]))
    tensor = sparse.encode(["b", "d"], normalize_embeddings=True)
    assert tensor.is_sparse
    np.testing.assert_allclose(tensor.to_dense().numpy(), dense, rtol=1e-6)


def test_the_ontology_is_read_once_per_file(tiny_go) -> None:  # noqa: F811
    go, lin = go_lin_similarity(tiny_go)
    assert go_lin_similarity(str(tiny_go))[1] is lin  # the same file, another spelling of its path
    assert lin.namespace_of.keys() == go.terms.keys()
    with pytest.raises(FileNotFoundError, match="GO SQLite not found"):
        go_lin_similarity(tiny_go.parent / "missing.sqlite")
