"""The task registry: the built-in tasks, unknown names, and outside tasks registered by one decorator."""

from __future__ import annotations

import numpy as np
import pytest

from seqstruct.evaluation.tasks import (
    TASKS,
    TaskResult,
    get_task,
    register_task,
)
from tests.evaluation.tasks.datasets import (
    StandIn,
)


def test_builtin_tasks_are_registered() -> None:
    builtin = {
        "go-mf",
        "go-mf-class",
        "protein-link",
        "wordnet-supersense",
        "go-category",
        "go-synonym-search",
        "go-similarity",
        "wordnet-lemma-search",
        "knn",
        "link",
        "go-link",
        "wordnet-link",
    }
    assert builtin <= set(TASKS)
    assert get_task("knn").options() == {"columns": (), "neighbours": 3, "metric": "cosine"}
    assert get_task("link").options() == get_task("protein-link").options()  # one class, four datasets
    assert get_task("go-link").kind == "text" and get_task("wordnet-link").dataset == "wordnet"
    assert get_task("go-similarity").dataset == "go-text" and get_task("go-similarity").kind == "text"
    assert get_task("go-similarity").options() == {
        "split": "test",
        "pairs": 2000,
        "sample_seed": 0,
        "related_fraction": 0.5,
        "go_sqlite": "",
    }
    assert get_task("wordnet-lemma-search").dataset == "wordnet"
    assert get_task("wordnet-lemma-search").options()["examples"] is False
    for name in ("wordnet-supersense", "go-category", "go-mf-class"):
        assert get_task(name).options()["classifier"] == "probe"
        assert get_task(name).options()["neighbours"] == 10
    assert get_task("go-mf").dataset == "swissprot-go" and get_task("go-mf").kind == "protein"
    assert get_task("go-synonym-search").options()["cap"] == 2000
    assert get_task("wordnet-supersense").options()["column"] == "supersense"
    assert get_task("go-category").options()["column"] == "top_level"


def test_unknown_task_names_the_registered_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown task 'go-xx'; expected one of \[.*'go-mf'.*\]"):
        get_task("go-xx")


def test_an_outside_function_registers_with_one_decorator(texts) -> None:
    @register_task("test-count-words", dataset="tiny-text", kind="text", split="test")
    def count_words(data, method, seed, split: str, scale: float = 1.0) -> dict:
        words = [len(t.split()) for t in data.split(split)["text"]]
        return {split: {"mean_words": scale * float(np.mean(words))}}

    try:
        spec = get_task("test-count-words")
        assert spec.options() == {"split": "test", "scale": 1.0}
        expected = np.mean([len(t.split()) for t in texts.split("valid")["text"]])
        result = spec.run(texts, StandIn(), 0, split="valid", scale=2.0)
        assert result.metrics == {"valid": {"mean_words": pytest.approx(2 * expected)}}
        with pytest.raises(
            ValueError, match=r"no option\(s\) \['colour'\]; its options are \['scale', 'split'\]"
        ):
            spec.run(texts, StandIn(), 0, colour=1)
    finally:
        TASKS.pop("test-count-words")


def test_an_outside_class_registers_and_kinds_are_checked(proteins, texts) -> None:
    @register_task("test-rows", dataset="tiny-proteins", kind="protein")
    class Rows:
        def __init__(self, split: str = "train") -> None:
            self.split = split

        def run(self, data, method, seed) -> TaskResult:
            return TaskResult({self.split: {"rows": float(len(data.split(self.split)))}}, {"seed": seed})

    try:
        result = get_task("test-rows").run(proteins, StandIn(), 3, split="valid")
        assert result.metrics == {"valid": {"rows": 9.0}} and result.counts == {"seed": 3}
        with pytest.raises(ValueError, match="reads a protein dataset; .* is a text dataset"):
            get_task("test-rows").run(texts, StandIn(), 0)
        with pytest.raises(ValueError, match="already registered"):
            register_task("test-rows", dataset="x", kind="protein")(lambda data, method, seed: {})
        with pytest.raises(ValueError, match=r"takes no option\(s\) \['colour'\]"):
            register_task("test-other", dataset="x", kind="protein", colour=1)(Rows)
    finally:
        TASKS.pop("test-rows")
    with pytest.raises(ValueError, match="kind must be one of"):
        register_task("test-bad", dataset="x", kind="audio")
