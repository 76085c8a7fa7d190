"""The go-similarity task: Spearman of cosine against Lin similarity over the whole GO DAG."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from seqstruct.data.graph import read_edge_list
from seqstruct.data.sources.go import read_go
from seqstruct.evaluation.methods import NotApplicable, build_method
from seqstruct.evaluation.retrieval import WORD_PATTERN
from seqstruct.evaluation.similarity import LinSimilarity, sample_pairs
from seqstruct.evaluation.tasks import (
    GO_ROOTS,
    get_task,
    go_source,
)
from tests.data.test_go import tiny_go  # noqa: F401  (fixture)
from tests.evaluation.tasks.datasets import (
    GO_FIXTURE,
    StandIn,
)


def test_go_similarity_with_tfidf_is_spearman_of_tfidf_cosine_against_lin(go_text) -> None:
    result = get_task("go-similarity").run(go_text, build_method("baseline:tfidf"), 0)
    # the same pairs and Lin scores from the whole GO fixture, TF-IDF fitted on the pairs' texts
    go = read_go(GO_FIXTURE)
    rows = go_text.split("test")
    pairs = sample_pairs(LinSimilarity.from_go(go), dict(zip(rows["id"], rows["text"], strict=True)), 2000, 0)
    texts = pairs.texts()
    vectors = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=WORD_PATTERN)
    x = normalize(vectors.fit_transform(texts)).toarray()  # [T, V]
    index = {t: i for i, t in enumerate(texts)}
    cosine = [x[index[a]] @ x[index[b]] for a, b in zip(pairs.sentences1, pairs.sentences2, strict=True)]
    metrics = result.metrics["test"]
    assert metrics["spearman"] == pytest.approx(spearmanr(pairs.scores, cosine).statistic, abs=1e-6)
    assert metrics["pearson"] == pytest.approx(pearsonr(pairs.scores, cosine).statistic, abs=1e-5)
    assert 0.0 < metrics["spearman"] < 1.0
    # 19 test terms make 71 distinct pairs of one namespace; 12 of them related
    assert result.counts["pairs"] == len(pairs) == 71 and result.counts["terms"] == len(texts)
    assert result.counts["related_pairs"] == pairs.kinds.count("related") == 12
    assert result.counts["ontology"] == str(GO_FIXTURE.resolve())


def test_go_similarity_reads_the_whole_dag_not_the_datasets_graph(go_text) -> None:
    # graph.tsv joins train terms only: a test term has no edge there, yet its parents in GO are known
    assert go_source(go_text) == GO_FIXTURE.resolve()  # the file the recipe read, from the dataset card
    ids = [i for split in go_text.splits.values() for i in split["id"]]
    graph, _ = read_edge_list(go_text.graph_path, ids)
    test = set(go_text.split("test")["id"])
    degree = graph.neighbours()
    assert all(len(degree[ids.index(t)]) == 0 for t in test)
    go = read_go(GO_FIXTURE)
    assert all(go.is_a.get(t) for t in test if go.terms[t].id not in GO_ROOTS)
    rng = np.random.default_rng(0)
    method = StandIn(vectors=lambda batch: rng.normal(size=(len(batch), 8)))
    result = get_task("go-similarity").run(go_text, method, 0)
    assert result.counts["related_pairs"] > 0  # pairs sharing a parent: found through the whole DAG
    assert -1.0 < result.metrics["test"]["spearman"] < 1.0


def test_go_similarity_on_valid_and_errors(go_text, tiny_go) -> None:  # noqa: F811
    tfidf = build_method("baseline:tfidf")
    valid = get_task("go-similarity").run(go_text, tfidf, 0, split="valid", pairs=20, sample_seed=1)
    assert set(valid.metrics) == {"valid"} and valid.counts["pairs"] == 20
    with pytest.raises(ValueError, match="not the GO release the dataset was prepared from"):
        get_task("go-similarity").run(go_text, tfidf, 0, go_sqlite=str(tiny_go))
    with pytest.raises(NotApplicable, match="no embedding"):
        get_task("go-similarity").run(go_text, build_method("baseline:bm25"), 0)
    with pytest.raises(ValueError, match="pairs must be at least 2"):
        get_task("go-similarity").run(go_text, tfidf, 0, pairs=1)
