"""The task registry: what `seqstruct evaluate MODEL --task NAME` can run, on which prepared dataset.

A task reads a prepared dataset (`seqstruct.data.prepared`), asks a method (`seqstruct.evaluation.methods`:
an encoder probed or fine-tuned, or a baseline) for scores, embeddings or rankings, and scores them. It
never trains or embeds itself, so every method meets every task through the same three questions:

    method.classify(problem, seed) -> {test split: scores [n, C]}   classification (single or multi-label)
    method.embed(texts, kind)      -> [N, D]                         link retrieval, kNN, similarity (cosine)
    method.search(queries, corpus, k, kind) -> indices [Q, k]        text retrieval

Adding a task, inside the package or out, is one decorator on a class (instantiated with the options,
then `.run(data, method, seed)`) or on a function (`fn(data, method, seed, **options)`); both return a
`TaskResult` (or a plain {split: {metric: value}} dict):

    @register_task("my-task", dataset="wordnet", kind="text", column="pos")
    def my_task(data: Prepared, method: Method, seed: int, column: str) -> TaskResult: ...

`dataset` names the recipe whose output the task reads by default (data/prepared/<dataset>); `kind`
(protein | text) must match the dataset's. Keyword defaults given to the decorator are the task's
options; a user overrides them with key=value on the command line. One class may be registered under
several names with different defaults (the built-in single-label tasks are one class).
"""

from __future__ import annotations

import inspect
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from seqstruct.data.graph import Graph, read_edge_list
from seqstruct.data.prepared import KINDS, TRAIN, Prepared
from seqstruct.data.sources.go import resolve_go_path
from seqstruct.evaluation.metrics import accuracy, fmax, macro_f1, micro_aupr
from seqstruct.evaluation.retrieval import cosine_search, knn_vote, ranking_metrics
from seqstruct.evaluation.similarity import (
    EmbeddingFunctionModel,
    go_lin_similarity,
    sample_pairs,
    similarity_correlations,
)
from seqstruct.evaluation.structure import heldout_nodes, link_retrieval

logger = logging.getLogger(__name__)

GO_ROOTS = ("GO:0003674", "GO:0008150", "GO:0005575")  # MF, BP, CC roots: every annotated protein has one
CLASSIFIERS = ("probe", "knn")  # single-label tasks: the method's classifier, or cosine kNN on its embedding
PROTEIN_TESTS = ("test_close", "test_remote")  # protein datasets' test splits, by homology to train


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

    def embed(self, texts: Sequence[str], kind: str) -> np.ndarray | sp.spmatrix:
        """[N, D] vectors compared by cosine: dense, or sparse term weights (TF-IDF). The vectors of one call
        share a space (a TF-IDF is fitted on the texts of the call), so tasks embed together what they
        compare."""
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
# Built-in tasks: classification
# ---------------------------------------------------------------------------------------------------


def _labelled(data: Prepared, split: str, keep: np.ndarray, targets: np.ndarray) -> Labelled:
    """The rows of `split` where keep [n] is True, with their targets."""
    rows = data.split(split)
    ids, texts = list(rows["id"]), list(rows["text"])
    index = np.flatnonzero(keep)
    return Labelled([ids[i] for i in index], [texts[i] for i in index], targets)


def _column(data: Prepared, split: str, column: str) -> list[Any]:
    rows = data.split(split)
    if column not in rows.column_names:
        raise ValueError(f"{data.path}: split {split!r} has no column {column!r}; it has {rows.column_names}")
    return list(rows[column])


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
        annotations = _column(data, split, self.column)
        targets = np.zeros((len(annotations), len(index)), dtype=bool)  # [n, T]
        for row, terms in enumerate(annotations):
            targets[row, [index[t] for t in terms if t in index]] = True
        keep = targets.any(axis=1)
        return _labelled(data, split, keep, targets[keep]), int((~keep).sum())

    def run(self, data: Prepared, method: Method, seed: int) -> TaskResult:
        counts = Counter(t for terms in _column(data, "train", self.column) for t in set(terms))
        terms = sorted(t for t, c in counts.items() if c >= self.min_count and t not in self.exclude)
        if not terms:
            raise ValueError(
                f"{data.path}: no {self.column} term has >= {self.min_count} train rows (min_count)"
            )
        index = {t: j for j, t in enumerate(terms)}
        parts = {s: self._split(data, s, index) for s in ("train", self.valid_split, *self.test_splits)}
        empty = [s for s, (part, _) in parts.items() if not len(part)]
        if empty:
            raise ValueError(f"{data.path}: splits {empty} have no row with one of the {len(terms)} terms")
        problem = Classification(
            kind=data.info.kind,
            multilabel=True,
            classes=terms,
            train=parts["train"][0],
            valid=parts[self.valid_split][0],
            tests={s: parts[s][0] for s in self.test_splits},
        )
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
    class of its `neighbours` most cosine-similar train rows (`knn_vote`; ties to the closer class). Train
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
        x = method.embed([t for part in parts for t in part.texts], problem.kind)  # [N_all, D]
        x = x.tocsr() if sp.issparse(x) else x
        ends = np.cumsum([len(part) for part in parts])  # [1 + tests]
        train = x[: ends[0]]
        out = {}
        for split, start, end in zip(problem.tests, ends[:-1], ends[1:], strict=True):
            found, cosines = cosine_search(x[start:end], train, self.neighbours)  # [n, k] each
            out[split] = knn_vote(found, cosines, problem.train.targets, len(problem.classes))
        return out

    def run(self, data: Prepared, method: Method, seed: int) -> TaskResult:
        train = _column(data, "train", self.column)
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
            labels = _column(data, split, self.column)
            keep = np.array([v in index for v in labels], dtype=bool)
            dropped[split] = int((~keep).sum())
            if split in self.test_splits and self.max_test and keep.sum() > self.max_test:
                kept = np.flatnonzero(keep)
                keep[:] = False
                keep[kept[_capped_sample(len(kept), self.max_test, 0)]] = True
            targets = np.array([index[v] for v, k in zip(labels, keep, strict=True) if k], dtype=np.int64)
            parts[split] = _labelled(data, split, keep, targets)
        empty = [s for s, part in parts.items() if not len(part)]
        if empty:
            raise ValueError(f"{data.path}: splits {empty} have no row of the {len(classes)} classes")
        problem = Classification(
            kind=data.info.kind,
            multilabel=False,
            classes=classes,
            train=parts["train"],
            valid=parts[self.valid_split],
            tests={s: parts[s] for s in self.test_splits},
        )
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


# ---------------------------------------------------------------------------------------------------
# Built-in tasks: retrieval
# ---------------------------------------------------------------------------------------------------


@register_task("protein-link", dataset="swissprot-go", kind="protein")
class LinkTask:
    """Held-out link retrieval: each protein of heldout_nodes.txt ranks every other protein of the dataset
    (all splits) by cosine; its relevant ones are its neighbours in graph_heldout.tsv. Training-graph
    neighbours of a query, if any, are left out of its ranking (neither hit nor miss)."""

    def __init__(self, ndcg_k: int = 10, ks: Sequence[int] = (1, 5, 10), candidates: str = "all") -> None:
        if candidates not in ("all", "heldout"):
            raise ValueError(f"candidates must be 'all' or 'heldout'; got {candidates!r}")
        self.ndcg_k, self.ks, self.candidates = ndcg_k, tuple(ks), candidates

    def run(self, data: Prepared, method: Method, seed: int) -> TaskResult:
        """With candidates=heldout only proteins outside train are ranked (and are relevant): a cheaper
        variant on large datasets, where embedding every training protein would dominate the cost."""
        if not data.heldout_graph_path.is_file():
            raise FileNotFoundError(f"{data.path}: no graph_heldout.tsv, so no held-out links to retrieve")
        ids = [i for split in data.splits.values() for i in split["id"]]
        texts = [t for split in data.splits.values() for t in split["text"]]
        heldout, _ = read_edge_list(data.heldout_graph_path, ids)
        if data.graph_path.is_file():
            train, _ = read_edge_list(data.graph_path, ids)
        else:
            train = Graph(tuple(ids), np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float32))
        if self.candidates == "heldout":
            outside = set(ids) - set(data.split(TRAIN)["id"])
            keep = np.array([i for i, node in enumerate(ids) if node in outside], dtype=np.int64)
            heldout, train = heldout.subgraph(keep), train.subgraph(keep)
            ids, texts = [ids[i] for i in keep], [texts[i] for i in keep]
        queries, rule = heldout_nodes(data.path, train, heldout)
        if not len(queries):
            raise ValueError(f"{data.path}: no held-out nodes (by rule {rule!r}) to query")
        x = method.embed(texts, data.info.kind)  # [N, D]
        true, known = heldout.neighbours(), train.neighbours()
        found = link_retrieval(
            x,
            queries,
            [true[q] for q in queries],
            ks=self.ks,
            exclude=[known[q] for q in queries],
            metric="cosine",
            ndcg_k=self.ndcg_k,
        )
        metrics = {k: v for k, v in found.items() if isinstance(v, float)}
        counts = {"queries": found["queries"], "skipped": found["skipped"], "candidates": len(ids) - 1}
        counts |= {"candidate_pool": self.candidates}
        return TaskResult({"heldout": metrics}, counts | {"heldout_rule": rule})


@register_task("go-synonym-search", dataset="go-text", kind="text")
class SynonymSearchTask:
    """Find a GO term by a synonym: queries are synonyms of the terms of `split` (a seeded sample of at most
    `cap`), the corpus is the names of all terms of every split, the relevant item a query's own term.
    MRR@10, nDCG@10, recall@1/5/10. A synonym equal to its own term's name (case aside) is no test and
    is dropped, as are repeats."""

    def __init__(
        self,
        split: str = "test",
        cap: int = 2000,
        sample_seed: int = 0,
        name_column: str = "name",
        synonym_column: str = "synonyms",
        k: int = 10,
    ) -> None:
        self.split, self.cap, self.sample_seed, self.k = split, cap, sample_seed, k
        self.name_column, self.synonym_column = name_column, synonym_column

    def run(self, data: Prepared, method: Method, seed: int) -> TaskResult:
        ids = [i for s in data.splits for i in data.split(s)["id"]]
        names = [n for s in data.splits for n in _column(data, s, self.name_column)]
        position = {node: j for j, node in enumerate(ids)}
        queries, targets, seen = [], [], set()
        rows = data.split(self.split)
        for node, synonyms in zip(rows["id"], _column(data, self.split, self.synonym_column), strict=True):
            own = names[position[node]].strip().lower()
            for synonym in synonyms or []:
                key = (synonym.strip().lower(), node)
                if key[0] and key[0] != own and key not in seen:
                    seen.add(key)
                    queries.append(synonym.strip())
                    targets.append(position[node])
        if not queries:
            raise ValueError(f"{data.path}: split {self.split!r} has no synonym to query with")
        available = len(queries)
        pick = _capped_sample(available, self.cap, self.sample_seed)
        queries, targets = [queries[i] for i in pick], [targets[i] for i in pick]
        metrics = _search(method, queries, names, [[t] for t in targets], self.k, data.info.kind)
        counts = {"queries": len(queries), "synonyms": available, "corpus": len(names), "cap": self.cap}
        return TaskResult({self.split: metrics}, counts)


RANK_KS = (1, 5, 10)  # recall@k of the retrieval tasks
RANK_CUTOFF = 10  # MRR@10 and nDCG@10


def _capped_sample(available: int, cap: int, seed: int) -> np.ndarray:
    """Indices of at most `cap` of `available` items (0: all): a seeded sample, in the original order."""
    if not cap or available <= cap:
        return np.arange(available)
    return np.sort(np.random.default_rng(seed).choice(available, cap, replace=False))


def _search(
    method: Method,
    queries: list[str],
    corpus: list[str],
    relevant: Sequence[Sequence[int]],
    k: int,
    kind: str,
) -> dict[str, float]:
    """The method's top k of `corpus` for each query, scored against each query's relevant corpus indices:
    MRR@10, nDCG@10 and recall@1/5/10, as sentence-transformers' InformationRetrievalEvaluator defines
    them (tests/evaluation/test_retrieval.py checks the two agree)."""
    if k < max(*RANK_KS, RANK_CUTOFF):
        raise ValueError(f"k (ranking depth) must be at least {max(*RANK_KS, RANK_CUTOFF)} for these metrics")
    ranked = method.search(queries, corpus, k, kind)  # [Q, k]
    return ranking_metrics(ranked, relevant, ks=RANK_KS, cutoff=RANK_CUTOFF)


_EXAMPLE = re.compile(r'\s*;?\s*"[^"]*"')  # a WordNet gloss's usage example: '; "the dog barked all night"'


def gloss_definition(gloss: str) -> str:
    """A WordNet gloss without its quoted usage examples (the definition part); the gloss itself when
    nothing else is left.

    >>> gloss_definition('a domestic animal; "the dog barked all night"; "dogs bark"')
    'a domestic animal'
    """
    definition = _EXAMPLE.sub("", gloss).strip().rstrip(";").strip()
    return definition or gloss


@register_task("wordnet-lemma-search", dataset="wordnet", kind="text")
class LemmaSearchTask:
    """Find a WordNet synset by one of its words: queries are the distinct lemmas of the synsets of `split`
    (case aside; a seeded sample of at most `cap`), the corpus is the glosses of every synset of `split`,
    and a query's relevant documents are the glosses of all its synsets there (a polysemous word has
    several). MRR@10, nDCG@10, recall@1/5/10.

    examples=False (default) keeps a gloss's definition only: its quoted usage examples most often contain
    the lemma itself ("the dog barked all night"), which would turn the search into string matching.
    """

    def __init__(
        self,
        split: str = "test",
        cap: int = 2000,
        sample_seed: int = 0,
        lemma_column: str = "lemmas",
        examples: bool = False,
        k: int = 10,
    ) -> None:
        self.split, self.cap, self.sample_seed, self.k = split, cap, sample_seed, k
        self.lemma_column, self.examples = lemma_column, examples

    def run(self, data: Prepared, method: Method, seed: int) -> TaskResult:
        glosses = _column(data, self.split, "text")
        corpus = glosses if self.examples else [gloss_definition(g) for g in glosses]
        synsets: dict[str, list[int]] = {}  # case-folded lemma -> rows of its synsets
        spelling: dict[str, str] = {}  # case-folded lemma -> its first spelling, the query text
        for row, lemmas in enumerate(_column(data, self.split, self.lemma_column)):
            for lemma in lemmas or []:
                key = lemma.strip().casefold()
                if key and row not in synsets.setdefault(key, []):
                    synsets[key].append(row)
                    spelling.setdefault(key, lemma.strip())
        if not synsets:
            raise ValueError(f"{data.path}: split {self.split!r} has no lemma to query with")
        keys = list(synsets)
        keys = [keys[i] for i in _capped_sample(len(keys), self.cap, self.sample_seed)]
        queries, relevant = [spelling[key] for key in keys], [synsets[key] for key in keys]
        metrics = _search(method, queries, corpus, relevant, self.k, data.info.kind)
        counts = {
            "queries": len(queries),
            "lemmas": len(synsets),
            "corpus": len(corpus),
            "cap": self.cap,
            "relevant_per_query": float(np.mean([len(r) for r in relevant])),
            "examples_removed": sum(d != g for d, g in zip(corpus, glosses, strict=True)),
        }
        return TaskResult({self.split: metrics}, counts)


# ---------------------------------------------------------------------------------------------------
# Built-in tasks: graded similarity
# ---------------------------------------------------------------------------------------------------


def go_source(data: Prepared, given: str | Path = "") -> Path:
    """The GO SQLite to read the full is_a DAG from for a prepared go-text dataset: `given`, else the file
    the recipe read (the dataset's config.go_sqlite) where it still is, else where the recipe looks
    (`resolve_go_path`: $SEQSTRUCT_GO_SQLITE, data/external/GO.sqlite)."""
    if given:
        return resolve_go_path(given)
    recorded = data.info.config.get("go_sqlite")
    if recorded and Path(recorded).is_file():
        return Path(recorded)
    if recorded:
        logger.info(
            "%s: the GO SQLite it was prepared from (%s) is gone; looking elsewhere", data.path, recorded
        )
    return resolve_go_path(None)


@register_task("go-similarity", dataset="go-text", kind="text")
class GoSimilarityTask:
    """Graded similarity of GO definitions: `pairs` pairs of terms of `split` (half sharing a parent or
    grandparent, half random within a namespace; `seqstruct.evaluation.similarity.sample_pairs`), gold
    score Lin similarity with intrinsic IC; Spearman and Pearson of the method's cosine between the two
    definitions, computed by sentence-transformers' EmbeddingSimilarityEvaluator.

    Lin needs the whole is_a DAG, and a prepared go-text dataset does not hold it: graph.tsv keeps only
    edges between terms with a definition, undirected, and only those inside train (held-out terms' edges
    are in graph_heldout.tsv). The DAG is therefore read from the GO SQLite the dataset was prepared from
    (`go_source`; go_sqlite=PATH to name one), every term counted. Each term of `split` must be in it with
    the same definition, or the task stops: another GO release would score other pairs.
    """

    def __init__(
        self,
        split: str = "test",
        pairs: int = 2000,
        sample_seed: int = 0,
        related_fraction: float = 0.5,
        go_sqlite: str = "",
    ) -> None:
        if pairs < 2:
            raise ValueError(f"pairs must be at least 2 (a correlation); got {pairs}")
        self.split, self.pairs, self.sample_seed = split, pairs, sample_seed
        self.related_fraction, self.go_sqlite = related_fraction, go_sqlite

    def run(self, data: Prepared, method: Method, seed: int) -> TaskResult:
        path = go_source(data, self.go_sqlite)
        go, lin = go_lin_similarity(path)
        texts = dict(zip(_column(data, self.split, "id"), _column(data, self.split, "text"), strict=True))
        for term, text in texts.items():
            found = go.terms.get(term)
            if found is None or (found.definition or "").strip() != text:
                what = "has no term" if found is None else "defines differently"
                raise ValueError(
                    f"{path} {what} {term} of {data.path} (split {self.split!r}): not the GO release the "
                    "dataset was prepared from; give that GO.sqlite as go_sqlite=PATH"
                )
        pairs = sample_pairs(lin, texts, self.pairs, self.sample_seed, self.related_fraction)
        if len(pairs) < 2:
            raise ValueError(f"{data.path}: split {self.split!r} gives {len(pairs)} term pair(s); need 2")
        model = EmbeddingFunctionModel(lambda batch: method.embed(batch, data.info.kind))
        metrics = similarity_correlations(model, pairs)
        scores = np.asarray(pairs.scores)
        counts = {
            "pairs": len(pairs),
            "related_pairs": pairs.kinds.count("related"),
            "terms": len(pairs.texts()),
            "lin_mean": float(scores.mean()),
            "lin_zero": int((scores == 0.0).sum()),
            "ontology": str(path),
            "ontology_terms": len(go.terms),
        }
        return TaskResult({self.split: metrics}, counts)
