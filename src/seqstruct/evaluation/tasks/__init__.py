"""Evaluation tasks: the registry (`registry`) and the built-in task families, which register on import.

classification  go-mf, go-mf-class, go-category, wordnet-supersense
structure       knn, link, protein-link, go-link, wordnet-link
search          go-synonym-search, wordnet-lemma-search
similarity      go-similarity
"""

from __future__ import annotations

from seqstruct.evaluation.tasks.classification import (
    CLASSIFIERS,
    GO_ROOTS,
    PROTEIN_TESTS,
    MultiLabelTask,
    SingleLabelTask,
)
from seqstruct.evaluation.tasks.registry import (
    TASKS,
    Classification,
    Labelled,
    Method,
    TaskResult,
    TaskSpec,
    get_task,
    register_task,
)
from seqstruct.evaluation.tasks.search import LemmaSearchTask, SynonymSearchTask, gloss_definition
from seqstruct.evaluation.tasks.similarity import GoSimilarityTask, go_source
from seqstruct.evaluation.tasks.structure import KnnTask, LinkTask, heldout_nodes

__all__ = [
    "CLASSIFIERS",
    "GO_ROOTS",
    "PROTEIN_TESTS",
    "TASKS",
    "Classification",
    "GoSimilarityTask",
    "KnnTask",
    "Labelled",
    "LemmaSearchTask",
    "LinkTask",
    "Method",
    "MultiLabelTask",
    "SingleLabelTask",
    "SynonymSearchTask",
    "TaskResult",
    "TaskSpec",
    "get_task",
    "gloss_definition",
    "go_source",
    "heldout_nodes",
    "register_task",
]
