"""The search tasks: GO synonym search and WordNet lemma search, by hand and on the recipe's output."""

from __future__ import annotations

import numpy as np
import pytest

from seqstruct.data.sources.wordnet import prepare_wordnet
from seqstruct.evaluation.methods import build_method
from seqstruct.evaluation.tasks import (
    get_task,
    gloss_definition,
)
from tests.evaluation.tasks.datasets import (
    WORDNET_FIXTURE,
    StandIn,
    wordnet_dataset,
)


def test_go_synonym_search_scores_rank_of_own_term(texts) -> None:
    seen = {}

    def second(queries, corpus, k):  # the right term at rank 2 behind corpus item 0 (or 1 for item 0)
        seen.update(queries=list(queries), corpus=list(corpus))
        names = list(corpus)
        right = [names.index(name_of[q]) for q in queries]
        return np.array([[0 if r else 1, r] + [j for j in range(2, k + 2) if j != r][: k - 2] for r in right])

    name_of = {}
    for split in ("test",):
        for name, synonyms in zip(texts.split(split)["name"], texts.split(split)["synonyms"], strict=True):
            for s in synonyms:
                name_of[s] = name
    result = get_task("go-synonym-search").run(texts, StandIn(rank=second), 0)
    # 6 test rows x 1 synonym each (the second repeats the own name and is dropped)
    assert result.counts == {"queries": 6, "synonyms": 6, "corpus": 36, "cap": 2000}
    assert len(seen["corpus"]) == 36 and seen["queries"][0] == "the test0 binds"
    metrics = result.metrics["test"]
    assert metrics["mrr@10"] == pytest.approx(0.5)
    assert metrics["recall@1"] == 0.0 and metrics["recall@5"] == 1.0
    assert metrics["ndcg@10"] == pytest.approx(1 / np.log2(3))
    capped = get_task("go-synonym-search").run(texts, StandIn(rank=second), 0, cap=4)
    assert capped.counts["queries"] == 4 and capped.counts["synonyms"] == 6


def test_wordnet_lemma_search_by_hand(tmp_path) -> None:
    data = wordnet_dataset(tmp_path / "wordnet")
    seen: dict[str, list[str]] = {}

    def in_corpus_order(queries, corpus, k):
        seen.update(queries=list(queries), corpus=list(corpus))
        return np.tile(np.arange(min(k, len(corpus))), (len(queries), 1))

    result = get_task("wordnet-lemma-search").run(data, StandIn(rank=in_corpus_order), 0)
    assert seen["queries"] == ["dog", "domestic dog", "cat", "frump", "big cat"]  # 'Cat' is 'cat'
    assert seen["corpus"][:2] == ["a domesticated carnivorous mammal", "a small feline"]  # no examples
    assert result.counts == {
        "queries": 5,
        "lemmas": 5,
        "corpus": 4,
        "cap": 2000,
        "relevant_per_query": pytest.approx(7 / 5),
        "examples_removed": 2,
    }
    # relevant rows: dog {0, 2}, domestic dog {0}, cat {1, 3}, frump {2}, big cat {3}; ranking 0 1 2 3
    metrics = result.metrics["test"]
    assert metrics["mrr@10"] == pytest.approx((1 + 1 + 1 / 2 + 1 / 3 + 1 / 4) / 5)
    assert metrics["recall@1"] == pytest.approx((1 / 2 + 1) / 5) and metrics["recall@5"] == 1.0
    ideal2 = 1 + 1 / np.log2(3)
    ndcg = [(1 + 1 / np.log2(4)) / ideal2, 1, (1 / np.log2(3) + 1 / np.log2(5)) / ideal2, 0.5, 1 / np.log2(5)]
    assert metrics["ndcg@10"] == pytest.approx(np.mean(ndcg))

    get_task("wordnet-lemma-search").run(data, StandIn(rank=in_corpus_order), 0, examples=True, cap=2)
    assert seen["corpus"][0] == 'a domesticated carnivorous mammal; "the dog barked all night"'
    assert len(seen["queries"]) == 2
    with pytest.raises(ValueError, match="must be at least 10"):
        get_task("wordnet-lemma-search").run(data, StandIn(rank=in_corpus_order), 0, k=5)


def test_gloss_definition() -> None:
    assert gloss_definition('move fast; "He runs every morning"; "she ran"') == "move fast"
    assert gloss_definition('a "quoted" word inside') == "a word inside"
    assert gloss_definition('"only an example"') == '"only an example"'  # nothing else: kept whole


def test_wordnet_lemma_search_on_the_recipe_output(tmp_path) -> None:
    data = prepare_wordnet(tmp_path / "wordnet", root=WORDNET_FIXTURE, seed=0)
    result = get_task("wordnet-lemma-search").run(data, build_method("baseline:bm25"), 0)
    assert result.counts["corpus"] == len(data.split("test")) and result.counts["queries"] >= 30
    assert 0.0 < result.metrics["test"]["recall@10"] <= 1.0
