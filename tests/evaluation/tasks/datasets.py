"""Tiny prepared datasets for the task tests (also used by test_methods, test_evaluate_cli, test_compare and
test_curve): proteins whose composition is biased by class, sentences whose words name their topic, four
WordNet synsets, the go-text recipe on the GO fixture; and a stand-in method whose outputs the test sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from seqstruct.data.graph import Graph
from seqstruct.data.prepared import DatasetInfo, Prepared, write_prepared
from seqstruct.data.sources.go_text import prepare_go_text
from seqstruct.evaluation.tasks import (
    GO_ROOTS,
    Classification,
)

GO_FIXTURE = Path(__file__).parents[2] / "fixtures" / "go_text" / "GO.sqlite"  # 210 real GO terms
WORDNET_FIXTURE = Path(__file__).parents[2] / "fixtures" / "wordnet"  # real WordNet 3.0 lines

RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
PROTEIN_CLASSES = {"kin": "K", "glu": "E", "trp": "W"}  # class -> the residue it is rich in
PROTEIN_SPLITS = {"train": 30, "valid": 9, "test_close": 9, "test_remote": 9}
TOPICS = {
    "binding": ["binds", "ligand", "interaction", "receptor"],
    "catalysis": ["enzyme", "catalyses", "reaction", "substrate"],
    "transport": ["moves", "membrane", "carrier", "channel"],
}
TEXT_SPLITS = {"train": 24, "valid": 6, "test": 6}


def _biased(rng: np.random.Generator, residue: str, length: int = 60) -> str:
    weights = np.full(len(RESIDUES), 1.0)
    weights[RESIDUES.index(residue)] = 12.0  # about 40% of the residues
    return "".join(rng.choice(list(RESIDUES), size=length, p=weights / weights.sum()))


def protein_dataset(path: Path, seed: int = 0) -> Prepared:
    """Row i of each split is of class i % 3. go_mf: the MF root, GO:<class>, GO:common on every row and
    GO:rare on train row 0 only; mf_class: the class, "" on rows 8, and "odd" on train row 1 only.
    Graph: each protein joined to the next one of its class (in split order, across splits)."""
    rng = np.random.default_rng(seed)
    names = list(PROTEIN_CLASSES)
    splits, order = {}, []
    for split, n in PROTEIN_SPLITS.items():
        classes = [names[i % 3] for i in range(n)]
        go = [[GO_ROOTS[0], f"GO:{c}", "GO:common"] for c in classes]
        labels = list(classes)
        labels[8] = ""
        if split == "train":
            go[0].append("GO:rare")
            labels[1] = "odd"
        ids = [f"{split}{i}" for i in range(n)]
        splits[split] = Dataset.from_dict(
            {
                "id": ids,
                "text": [_biased(rng, PROTEIN_CLASSES[c]) for c in classes],
                "go_mf": go,
                "mf_class": labels,
            }
        )
        order += list(zip(ids, classes, strict=True))
    nodes = tuple(node for node, _ in order)
    edges = []
    for name in names:
        members = [i for i, (_, c) in enumerate(order) if c == name]
        edges += list(zip(members[:-1], members[1:], strict=True))
    graph = Graph(nodes, np.sort(np.array(edges), axis=1), np.ones(len(edges), dtype=np.float32))
    info = DatasetInfo(name="tiny-proteins", kind="protein", recipe="test", config={})
    return write_prepared(path, info, splits, graph=graph)


def text_dataset(path: Path) -> Prepared:
    """Row i of each split is of topic i % 3 (top_level and supersense), "" top_level on row 5 of each
    split. name: '<topic word> process <split><i>'; one synonym per row, 'the <split><i> <topic word>'."""
    topics = list(TOPICS)
    splits = {}
    for split, n in TEXT_SPLITS.items():
        rows: dict[str, list] = {
            "id": [],
            "text": [],
            "name": [],
            "top_level": [],
            "supersense": [],
            "synonyms": [],
        }
        for i in range(n):
            topic = topics[i % 3]
            words = TOPICS[topic]
            rows["id"].append(f"GO:{split}{i}")
            rows["text"].append(f"a protein that {words[i % 4]} the {words[(i + 1) % 4]} of a cell")
            rows["name"].append(f"{words[i % 4]} process {split}{i}")
            rows["top_level"].append("" if i == 5 else topic)
            rows["supersense"].append(topic)
            rows["synonyms"].append([f"the {split}{i} {words[i % 4]}", f"{words[i % 4]} process {split}{i}"])
        splits[split] = Dataset.from_dict(rows)
    info = DatasetInfo(name="tiny-text", kind="text", recipe="test", config={})
    return write_prepared(path, info, splits)


@pytest.fixture(scope="module")
def go_text(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    """The go-text recipe on the GO fixture: 192 terms with a definition, 19 of them in test."""
    return prepare_go_text(tmp_path_factory.mktemp("go") / "go-text", go_sqlite=GO_FIXTURE, seed=0)


def wordnet_dataset(path: Path) -> Prepared:
    """Four test synsets: 'dog' names two (rows 0 and 2), 'cat' two as 'cat' and 'Cat' (rows 1 and 3)."""
    test = {
        "id": ["n1", "n2", "n3", "n4"],
        "text": [
            'a domesticated carnivorous mammal; "the dog barked all night"',
            'a small feline; "the cat purred"; "cats sleep"',
            "a dull unattractive woman",
            "a large wild feline",
        ],
        "lemmas": [["dog", "domestic dog"], ["cat"], ["dog", "frump"], ["Cat", "big cat"]],
        "pos": ["n"] * 4,
        "supersense": ["noun.animal", "noun.animal", "noun.person", "noun.animal"],
    }
    train = {key: values[:1] for key, values in test.items()} | {"id": ["n0"]}
    info = DatasetInfo(name="tiny-wordnet", kind="text", recipe="test", config={})
    return write_prepared(path, info, {"train": Dataset.from_dict(train), "test": Dataset.from_dict(test)})


class StandIn:
    """A method whose answers the test sets: scores from `score(problem, split)`, rankings from `rank`."""

    name = "stand-in"
    stochastic = False

    def __init__(self, score=None, vectors=None, rank=None) -> None:
        self.score, self.vectors, self.rank = score, vectors, rank
        self.problem: Classification | None = None
        self.last_fit: dict = {}

    def classify(self, problem: Classification, seed: int) -> dict[str, np.ndarray]:
        self.problem = problem
        return {split: self.score(problem, split) for split in problem.tests}

    def embed(self, texts: Sequence[str], kind: str, ids: Sequence[str] | None = None) -> np.ndarray:
        return self.vectors(texts)

    def search(self, queries: Sequence[str], corpus: Sequence[str], k: int, kind: str) -> np.ndarray:
        return self.rank(queries, corpus, k)


def truth(problem: Classification, split: str) -> np.ndarray:
    targets = problem.tests[split].targets
    if problem.multilabel:
        return targets.astype(float)
    return np.eye(len(problem.classes))[targets]
