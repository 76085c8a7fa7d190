"""The classification tasks (GO MF terms, GO MF class, text labels) with a stand-in method whose scores are known."""

from __future__ import annotations

import numpy as np
import pytest

from seqstruct.evaluation.tasks import (
    get_task,
)
from tests.evaluation.tasks.datasets import (
    StandIn,
    truth,
)


def test_go_mf_keeps_frequent_terms_and_scores_each_test_split(proteins) -> None:
    method = StandIn(score=truth)
    result = get_task("go-mf").run(proteins, method, 0, min_count=3)
    problem = method.problem
    # the root is excluded and GO:rare (1 train row) is below min_count: 3 classes + common remain
    assert problem.classes == ["GO:common", "GO:glu", "GO:kin", "GO:trp"]
    assert problem.multilabel and problem.tests.keys() == {"test_close", "test_remote"}
    assert problem.train.targets.shape == (30, 4) and problem.train.targets.sum() == 60
    assert problem.train.targets[0].tolist() == [True, False, True, False]  # train0 is kin
    assert result.counts["terms"] == 4 and result.counts["dropped_rows"]["train"] == 0
    for split in ("test_close", "test_remote"):
        assert result.metrics[split]["fmax"] == pytest.approx(1.0)
        assert result.metrics[split]["micro_aupr"] == pytest.approx(1.0)


def test_go_mf_with_uninformative_scores(proteins) -> None:
    # every term scored 0.5: at t <= 0.5 all 4 predicted, 2 true per protein: precision 1/2, recall 1
    flat = StandIn(score=lambda problem, split: np.full(problem.tests[split].targets.shape, 0.5))
    result = get_task("go-mf").run(proteins, flat, 0, min_count=3)
    assert result.metrics["test_close"]["fmax"] == pytest.approx(2 * 0.5 / 1.5)
    assert result.metrics["test_close"]["micro_aupr"] == pytest.approx(0.5)  # all tied: the positive rate
    with pytest.raises(ValueError, match=r"no go_mf term has >= 100 train rows \(min_count\)"):
        get_task("go-mf").run(proteins, flat, 0, min_count=100)


def test_go_mf_class_drops_empty_and_rare_classes(proteins) -> None:
    method = StandIn(score=truth)
    result = get_task("go-mf-class").run(proteins, method, 0)
    problem = method.problem
    assert problem.classes == ["glu", "kin", "trp"] and not problem.multilabel
    assert result.counts["dropped_rows"] == {"train": 2, "valid": 1, "test_close": 1, "test_remote": 1}
    assert (
        len(problem.train) == 28 and "train1" not in problem.train.ids and "train8" not in problem.train.ids
    )
    assert result.metrics["test_close"] == {"accuracy": 1.0, "macro_f1": 1.0}

    # always "kin": test_close keeps rows 0-7 = kin glu trp kin glu trp kin glu -> 3/8 right;
    # F1 kin = 2*(3/8*1)/(3/8+1) = 6/11, glu and trp 0.
    always_kin = StandIn(
        score=lambda problem, split: np.tile([0.0, 1.0, 0.0], (len(problem.tests[split]), 1))
    )
    result = get_task("go-mf-class").run(proteins, always_kin, 0)
    assert result.metrics["test_close"]["accuracy"] == pytest.approx(3 / 8)
    assert result.metrics["test_close"]["macro_f1"] == pytest.approx((6 / 11) / 3)
    assert result.counts["majority_class"] == "kin"  # train: kin 10, glu 9 (row 1 dropped), trp 9 (row 8)


def test_text_classification_tasks(texts) -> None:
    method = StandIn(score=truth)
    category = get_task("go-category").run(texts, method, 0)
    assert method.problem.classes == ["binding", "catalysis", "transport"]
    assert category.counts["dropped_rows"] == {"train": 1, "valid": 1, "test": 1}
    assert category.metrics == {"test": {"accuracy": 1.0, "macro_f1": 1.0}}
    supersense = get_task("wordnet-supersense").run(texts, method, 0)
    assert supersense.counts["dropped_rows"] == {"train": 0, "valid": 0, "test": 0}
    with pytest.raises(ValueError, match=r"split 'train' has no column 'colour'"):
        get_task("go-category").run(texts, method, 0, column="colour")
