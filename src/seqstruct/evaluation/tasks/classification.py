"""Classification tasks: multi-label GO terms (Fmax, micro-AUPR) and single-label columns (accuracy,
macro-F1), by the method's classifier or by cosine kNN on its embedding."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from seqstruct.data.prepared import Prepared
from seqstruct.evaluation.metrics import accuracy, fmax, macro_f1, micro_aupr
from seqstruct.evaluation.search import search
from seqstruct.evaluation.structure import knn_vote
from seqstruct.evaluation.tasks.registry import (
    Classification,
    Labelled,
    Method,
    TaskResult,
    capped_sample,
    labelled_rows,
    register_task,
    split_column,
)

GO_ROOTS = ("GO:0003674", "GO:0008150", "GO:0005575")  # MF, BP, CC roots: every annotated protein has one
CLASSIFIERS = ("probe", "knn")  # single-label tasks: the method's classifier, or cosine kNN on its embedding
PROTEIN_TESTS = ("test_close", "test_remote")  # protein datasets' test splits, by homology to train


def _problem(
    data: Prepared,
    multilabel: bool,
    classes: list[str],
    parts: dict[str, Labelled],
    valid_split: str,
    test_splits: Sequence[str],
) -> Classification:
    """The classification problem of `parts` (split -> its rows), none of which may be empty."""
    empty = [s for s, part in parts.items() if not len(part)]
    if empty:
        raise ValueError(f"{data.path}: splits {empty} have no row of the {len(classes)} classes (or terms)")
    return Classification(
        kind=data.info.kind,
        multilabel=multilabel,
        classes=classes,
        train=parts["train"],
        valid=parts[valid_split],
        tests={s: parts[s] for s in test_splits},
    )


@register_task("go-mf", dataset="swissprot-go", kind="protein", column="go_mf")
class MultiLabelTask:
    """Multi-label GO prediction: Fmax and micro-AUPR over the terms with >= min_count train proteins.

    Terms are ancestor-propagated in the dataset; the ontology roots are left out (exclude), as every
    annotated protein carries them. Rows with none of the kept terms are dropped from every split (Fmax
    leaves unannotated proteins out anyway), and counted.
    """

    def __init__(
        self,
        column: str = "go_mf",
        min_count: int = 20,
        test_splits: Sequence[str] = PROTEIN_TESTS,
        valid_split: str = "valid",
        exclude: Sequence[str] = GO_ROOTS,
    ) -> None:
        self.column, self.min_count, self.test_splits = column, min_count, tuple(test_splits)
        self.valid_split, self.exclude = valid_split, frozenset(exclude)

    def _split(self, data: Prepared, split: str, index: dict[str, int]) -> tuple[Labelled, int]:
        annotations = split_column(data, split, self.column)
        targets = np.zeros((len(annotations), len(index)), dtype=bool)  # [n, T]
        for row, terms in enumerate(annotations):
            targets[row, [index[t] for t in terms if t in index]] = True
        keep = targets.any(axis=1)
        return labelled_rows(data, split, keep, targets[keep]), int((~keep).sum())

    def run(self, data: Prepared, method: Method, seed: int) -> TaskResult:
        counts = Counter(t for terms in split_column(data, "train", self.column) for t in set(terms))
        terms = sorted(t for t, c in counts.items() if c >= self.min_count and t not in self.exclude)
        if not terms:
            raise ValueError(
                f"{data.path}: no {self.column} term has >= {self.min_count} train rows (min_count)"
            )
        index = {t: j for j, t in enumerate(terms)}
        parts = {s: self._split(data, s, index) for s in ("train", self.valid_split, *self.test_splits)}
        rows = {s: part for s, (part, _) in parts.items()}
        problem = _problem(data, True, terms, rows, self.valid_split, self.test_splits)
        scores = method.classify(problem, seed)
        metrics = {}
        for split in self.test_splits:
            truth = problem.tests[split].targets
            value, threshold = fmax(truth, scores[split])
            metrics[split] = {
                "fmax": value,
                "threshold": threshold,
                "micro_aupr": micro_aupr(truth, scores[split]),
            }
        return TaskResult(
            metrics,
            {
                "terms": len(terms),
                "min_count": self.min_count,
                "rows": {s: len(part) for s, (part, _) in parts.items()},
                "dropped_rows": {s: dropped for s, (_, dropped) in parts.items()},
            },
        )


@register_task(
    "wordnet-supersense", dataset="wordnet", kind="text", column="supersense", test_splits=("test",)
)
@register_task("go-category", dataset="go-text", kind="text", column="top_level", test_splits=("test",))
@register_task("go-mf-class", dataset="swissprot-go", kind="protein", column="mf_class")
class SingleLabelTask:
    """Single-label classification of a label column: accuracy and macro-F1 on each test split.

    Rows whose label is empty, or whose class has fewer than min_count train rows, are dropped from every
    split (a class the model cannot learn would only measure the split) and counted.

    classifier=probe (default): the method classifies (a logistic probe on its features, or fine-tuning).
    classifier=knn: the embedding itself is judged, with nothing fitted: each test row takes the majority
    class of its `neighbours` most cosine-similar train rows (`knn_vote`: ties to the closer class, then to
    the nearest neighbour's). Train
    and test rows are embedded in one call, so that a TF-IDF baseline puts them in one space; the valid
    split is not used. Its metrics are named knn_accuracy and knn_macro_f1, so that a table never mixes
    them with the probe's.

    max_test > 0 scores a fixed seeded sample of that many rows of each test split (the same sample for
    every method and seed): for grids of many fits, such as a learning curve, on large test splits.
    """

    def __init__(
        self,
        column: str,
        min_count: int = 2,
        test_splits: Sequence[str] = PROTEIN_TESTS,
        valid_split: str = "valid",
        classifier: str = "probe",
        neighbours: int = 10,
        max_test: int = 0,
    ) -> None:
        if classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {CLASSIFIERS}; got {classifier!r}")
        if neighbours < 1:
            raise ValueError(f"neighbours must be at least 1; got {neighbours}")
        self.column, self.min_count, self.test_splits = column, min_count, tuple(test_splits)
        self.valid_split, self.classifier, self.neighbours = valid_split, classifier, neighbours
        self.max_test = max_test

    def _knn(self, problem: Classification, method: Method) -> dict[str, np.ndarray]:
        """{test split: predicted class indices [n]} by cosine kNN over the train rows."""
        parts = [problem.train, *problem.tests.values()]
        texts = [t for part in parts for t in part.texts]
        x = method.embed(texts, problem.kind, ids=[i for part in parts for i in part.ids])  # [N_all, D]
        x = x.tocsr() if sp.issparse(x) else x
        ends = np.cumsum([len(part) for part in parts])  # [1 + tests]
        train = x[: ends[0]]
        out = {}
        for split, start, end in zip(problem.tests, ends[:-1], ends[1:], strict=True):
            found, cosines = search(x[start:end], train, self.neighbours)  # [n, k] each
            out[split] = knn_vote(problem.train.targets[found], cosines)
        return out

    def run(self, data: Prepared, method: Method, seed: int) -> TaskResult:
        train = split_column(data, "train", self.column)
        wrong = next((v for v in train if v is not None and not isinstance(v, str)), None)
        if wrong is not None:
            raise ValueError(
                f"{data.path}: column {self.column!r} must hold one class name (str); got {wrong!r}"
            )
        counts = Counter(v for v in train if v)
        classes = sorted(c for c, n in counts.items() if n >= self.min_count)
        if len(classes) < 2:
            raise ValueError(
                f"{data.path}: column {self.column!r} has {len(classes)} class(es) with >= {self.min_count} "
                "train rows (min_count); classification needs two"
            )
        index = {c: j for j, c in enumerate(classes)}
        parts, dropped = {}, {}
        for split in ("train", self.valid_split, *self.test_splits):
            labels = split_column(data, split, self.column)
            keep = np.array([v in index for v in labels], dtype=bool)
            dropped[split] = int((~keep).sum())
            if split in self.test_splits and self.max_test and keep.sum() > self.max_test:
                kept = np.flatnonzero(keep)
                keep[:] = False
                keep[kept[capped_sample(len(kept), self.max_test, 0)]] = True
            targets = np.array([index[v] for v, k in zip(labels, keep, strict=True) if k], dtype=np.int64)
            parts[split] = labelled_rows(data, split, keep, targets)
        problem = _problem(data, False, classes, parts, self.valid_split, self.test_splits)
        if self.classifier == "knn":
            predictions, prefix = self._knn(problem, method), "knn_"
        else:
            scores, prefix = method.classify(problem, seed), ""
            predictions = {split: scores[split].argmax(axis=1) for split in self.test_splits}
        metrics = {}
        for split in self.test_splits:
            truth, predicted = problem.tests[split].targets, predictions[split]
            metrics[split] = {
                f"{prefix}accuracy": accuracy(truth, predicted),
                f"{prefix}macro_f1": macro_f1(truth, predicted),
            }
        majority = np.bincount(problem.train.targets).argmax()
        knn = {"neighbours": self.neighbours} if self.classifier == "knn" else {}
        return TaskResult(
            metrics,
            {
                "classifier": self.classifier,
                **knn,
                "classes": len(classes),
                "min_count": self.min_count,
                "max_test": self.max_test,
                "rows": {s: len(part) for s, part in parts.items()},
                "dropped_rows": dropped,
                "majority_class": classes[majority],
                "majority_accuracy": {
                    s: float((problem.tests[s].targets == majority).mean()) for s in self.test_splits
                },
            },
        )
