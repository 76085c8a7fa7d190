"""The task registry: what `seqstruct evaluate MODEL --task NAME` can run, on which prepared dataset.

A task reads a prepared dataset (`seqstruct.data.prepared`), asks a method (`seqstruct.evaluation.methods`:
an encoder probed or fine-tuned, a baseline, or stored embeddings) for scores, embeddings or rankings, and
scores them. It never trains or embeds itself, so every method meets every task through the same three
questions:

    method.classify(problem, seed) -> {test split: scores [n, C]}   classification (single or multi-label)
    method.embed(texts, kind, ids)  -> [N, D]                        link retrieval, kNN, similarity (cosine)
    method.search(queries, corpus, k, kind) -> indices [Q, k]        text retrieval

`ids` are the records' ids when the texts are records of the dataset (None for other texts, such as a
query or a definition): a method of stored vectors (a .npz) looks its vectors up by them.

Adding a task, inside the package or out, is one decorator on a class (instantiated with the options,
then `.run(data, method, seed)`) or on a function (`fn(data, method, seed, **options)`); both return a
`TaskResult` (or a plain {split: {metric: value}} dict):

    @register_task("my-task", dataset="wordnet", kind="text", column="pos")
    def my_task(data: Prepared, method: Method, seed: int, column: str) -> TaskResult: ...

`dataset` names the recipe whose output the task reads by default (data/prepared/<dataset>); `kind`
(protein | text) must match the dataset's. Keyword defaults given to the decorator are the task's
options; a user overrides them with key=value on the command line. One class may be registered under
several names with different defaults (the built-in single-label tasks are one class). The built-in
task families live beside this module (classification, structure, search, similarity) and register
when `seqstruct.evaluation.tasks` is imported.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from seqstruct.data.prepared import KINDS, Prepared

# ---------------------------------------------------------------------------------------------------
# What tasks hand to methods, and what they return
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Labelled:
    """One split of a classification problem."""

    ids: list[str]
    texts: list[str]  # sequences or sentences
    targets: np.ndarray  # [n] class indices (single-label) or [n, C] booleans (multi-label)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Classification:
    """A classification problem as a method sees it: fit on train, choose settings on valid, score tests."""

    kind: str  # protein | text: which methods apply
    multilabel: bool
    classes: list[str]  # column j of targets and scores
    train: Labelled
    valid: Labelled
    tests: dict[str, Labelled]  # split name -> rows to score


class Method(Protocol):
    """What a task needs of a method (`seqstruct.evaluation.methods.Method` implements it)."""

    name: str
    stochastic: bool  # True: results depend on the seed, so runs repeat over seeds

    def classify(self, problem: Classification, seed: int) -> dict[str, np.ndarray]:
        """{test split: scores [n, C]}: probabilities (multi-label) or any scores whose argmax is the class."""
        ...

    def embed(
        self, texts: Sequence[str], kind: str, ids: Sequence[str] | None = None
    ) -> np.ndarray | sp.spmatrix:
        """[N, D] vectors compared by cosine: dense, or sparse term weights (TF-IDF). The vectors of one call
        share a space (a TF-IDF is fitted on the texts of the call), so tasks embed together what they
        compare. `ids`: the records' ids, where the texts are the dataset's records."""
        ...

    def search(self, queries: Sequence[str], corpus: Sequence[str], k: int, kind: str) -> np.ndarray:
        """[Q, k] corpus indices per query, best first."""
        ...


@dataclass
class TaskResult:
    """metrics: split -> metric -> value (averaged over seeds by the runner); counts: what was scored
    (rows, classes, dropped rows, ...), which does not depend on the seed."""

    metrics: dict[str, dict[str, float]]
    counts: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------------

_RUN_ARGS = ("self", "data", "method", "seed")


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: the class or function, its default dataset and kind, its option defaults."""

    name: str
    target: Callable[..., Any]
    dataset: str  # recipe name: the default data directory is data/prepared/<dataset>
    kind: str  # protein | text
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)

    def options(self) -> dict[str, Any]:
        """Option name -> default: the target's keyword parameters, with the registration's defaults."""
        call = self.target.__init__ if inspect.isclass(self.target) else self.target
        found = {
            name: (None if p.default is inspect.Parameter.empty else p.default)
            for name, p in inspect.signature(call).parameters.items()
            if name not in _RUN_ARGS and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }
        return found | self.defaults

    def run(self, data: Prepared, method: Method, seed: int, **options: Any) -> TaskResult:
        if data.info.kind != self.kind:
            raise ValueError(
                f"task {self.name!r} reads a {self.kind} dataset; {data.path} is a {data.info.kind} "
                f"dataset ({data.info.name})"
            )
        known = self.options()
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(
                f"task {self.name!r} has no option(s) {unknown}; its options are {sorted(known)}"
            )
        settings = self.defaults | options
        if inspect.isclass(self.target):
            result = self.target(**settings).run(data, method, seed)
        else:
            result = self.target(data, method, seed, **settings)
        return result if isinstance(result, TaskResult) else TaskResult(metrics=dict(result))


TASKS: dict[str, TaskSpec] = {}


def _required(target: Callable[..., Any]) -> set[str]:
    """The target's options without a default."""
    call = target.__init__ if inspect.isclass(target) else target
    return {
        name
        for name, p in inspect.signature(call).parameters.items()
        if name not in _RUN_ARGS
        and p.default is inspect.Parameter.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def register_task(
    name: str, *, dataset: str, kind: str, description: str = "", **defaults: Any
) -> Callable[[Any], Any]:
    """Decorator: make a class or function available as task `name` (see the module docstring); returns
    it unchanged, so that one class can carry several registrations."""
    if kind not in KINDS:
        raise ValueError(f"task {name!r}: kind must be one of {KINDS}; got {kind!r}")

    def wrap(target: Any) -> Any:
        if name in TASKS and TASKS[name].target is not target:
            raise ValueError(f"a task named {name!r} is already registered ({TASKS[name].target!r})")
        doc = description or (inspect.getdoc(target) or "").split("\n")[0]
        accepted = TaskSpec(name, target, dataset, kind).options()  # without this registration's defaults
        unknown = sorted(set(defaults) - set(accepted))
        if unknown:
            raise ValueError(f"task {name!r}: {target.__name__} takes no option(s) {unknown}")
        required = _required(target) - set(defaults)
        if required:
            raise ValueError(f"task {name!r}: give {target.__name__}'s required option(s) {sorted(required)}")
        TASKS[name] = TaskSpec(name, target, dataset, kind, doc, dict(defaults))
        return target

    return wrap


def get_task(name: str) -> TaskSpec:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASKS)}")
    return TASKS[name]


# ---------------------------------------------------------------------------------------------------
# Reading a prepared dataset's splits
# ---------------------------------------------------------------------------------------------------


def split_column(data: Prepared, split: str, name: str) -> list[Any]:
    """The values of column `name` in `split`; an error naming the columns there are."""
    rows = data.split(split)
    if name not in rows.column_names:
        raise ValueError(f"{data.path}: split {split!r} has no column {name!r}; it has {rows.column_names}")
    return list(rows[name])


def labelled_rows(data: Prepared, split: str, keep: np.ndarray, targets: np.ndarray) -> Labelled:
    """The rows of `split` where keep [n] is True, with their targets."""
    rows = data.split(split)
    ids, texts = list(rows["id"]), list(rows["text"])
    index = np.flatnonzero(keep)
    return Labelled([ids[i] for i in index], [texts[i] for i in index], targets)


def records(data: Prepared) -> tuple[list[str], list[str]]:
    """(ids, texts) of every split, in split order: the nodes of the dataset's graph."""
    ids = [i for split in data.splits.values() for i in split["id"]]
    texts = [t for split in data.splits.values() for t in split["text"]]
    return ids, texts


def capped_sample(available: int, cap: int, seed: int) -> np.ndarray:
    """Indices of at most `cap` of `available` items (0: all): a seeded sample, in the original order."""
    if not cap or available <= cap:
        return np.arange(available)
    return np.sort(np.random.default_rng(seed).choice(available, cap, replace=False))
