"""The task registry and each built-in task's plumbing, with stand-in methods whose outputs are known.

`protein_dataset` and `text_dataset` write tiny prepared datasets (also used by test_methods and
test_evaluate_cli): proteins whose composition is biased by class, sentences whose words name their topic.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset
from scipy.stats import pearsonr, spearmanr
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from seqstruct.data.graph import Graph, read_edge_list
from seqstruct.data.prepared import DatasetInfo, Prepared, write_prepared
from seqstruct.data.sources.go import read_go
from seqstruct.data.sources.go_text import prepare_go_text
from seqstruct.data.sources.wordnet import prepare_wordnet
from seqstruct.evaluation.methods import NotApplicable, build_method
from seqstruct.evaluation.retrieval import WORD_PATTERN
from seqstruct.evaluation.similarity import LinSimilarity, sample_pairs
from seqstruct.evaluation.tasks import (
    GO_ROOTS,
    TASKS,
    Classification,
    TaskResult,
    get_task,
    gloss_definition,
    go_source,
    register_task,
)
from tests.data.test_go import tiny_go  # noqa: F401  (fixture)

GO_FIXTURE = Path(__file__).parents[1] / "fixtures" / "go_text" / "GO.sqlite"  # 210 real GO terms
WORDNET_FIXTURE = Path(__file__).parents[1] / "fixtures" / "wordnet"  # real WordNet 3.0 lines

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
def proteins(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    return protein_dataset(tmp_path_factory.mktemp("proteins") / "data")


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    return text_dataset(tmp_path_factory.mktemp("texts") / "data")


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


def _truth(problem: Classification, split: str) -> np.ndarray:
    targets = problem.tests[split].targets
    if problem.multilabel:
        return targets.astype(float)
    return np.eye(len(problem.classes))[targets]


# ---------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------
# Classification tasks
# ---------------------------------------------------------------------------------------------------


def test_go_mf_keeps_frequent_terms_and_scores_each_test_split(proteins) -> None:
    method = StandIn(score=_truth)
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
    method = StandIn(score=_truth)
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
    method = StandIn(score=_truth)
    category = get_task("go-category").run(texts, method, 0)
    assert method.problem.classes == ["binding", "catalysis", "transport"]
    assert category.counts["dropped_rows"] == {"train": 1, "valid": 1, "test": 1}
    assert category.metrics == {"test": {"accuracy": 1.0, "macro_f1": 1.0}}
    supersense = get_task("wordnet-supersense").run(texts, method, 0)
    assert supersense.counts["dropped_rows"] == {"train": 0, "valid": 0, "test": 0}
    with pytest.raises(ValueError, match=r"split 'train' has no column 'colour'"):
        get_task("go-category").run(texts, method, 0, column="colour")


def _topic_vectors(texts: Sequence[str]) -> np.ndarray:
    """One-hot of the topic whose words a text of text_dataset uses."""
    return np.array([[float(any(w in t.split() for w in words)) for words in TOPICS.values()] for t in texts])


def test_knn_classifier_judges_the_embedding_without_the_methods_classifier(texts) -> None:
    calls: list[list[str]] = []

    def recorded(batch: Sequence[str]) -> np.ndarray:
        calls.append(list(batch))
        return _topic_vectors(batch)

    def no_classify(problem, split):
        raise AssertionError("kNN must not ask the method to classify")

    method = StandIn(score=no_classify, vectors=recorded)
    result = get_task("wordnet-supersense").run(texts, method, 0, classifier="knn", neighbours=3)
    assert result.metrics == {"test": {"knn_accuracy": 1.0, "knn_macro_f1": 1.0}}
    assert result.counts["classifier"] == "knn" and result.counts["neighbours"] == 3
    # train and test embedded together, in one call (valid is not used)
    train, test = texts.split("train")["text"], texts.split("test")["text"]
    assert calls == [list(train) + list(test)]

    # every text the same vector: all train rows tie at cosine 1 and come in corpus order, rows 0, 1, 2,
    # one of each topic; the tied vote goes to the lower class index, binding: a third of the test rows
    flat = StandIn(vectors=lambda batch: np.tile([1.0, 0.0, 0.0], (len(batch), 1)))
    result = get_task("wordnet-supersense").run(texts, flat, 0, classifier="knn", neighbours=3)
    assert result.metrics["test"]["knn_accuracy"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match=r"classifier must be one of \('probe', 'knn'\)"):
        get_task("go-category").run(texts, method, 0, classifier="svm")


def test_knn_on_tfidf_vectors(texts) -> None:
    # a test row shares its two topic words with train rows of its topic only
    result = get_task("go-category").run(texts, build_method("baseline:tfidf"), 0, classifier="knn")
    assert result.metrics["test"]["knn_accuracy"] == 1.0
    assert result.counts["rows"]["test"] == 5  # row 5 has no top_level


# ---------------------------------------------------------------------------------------------------
# Retrieval tasks
# ---------------------------------------------------------------------------------------------------


def _chains(data: Prepared) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """(ids in dataset order, text -> (class, position in its class's chain)), as protein_dataset built them."""
    ids, texts = [], []
    for split in data.splits:
        ids += data.split(split)["id"]
        texts += data.split(split)["text"]
    place, seen = {}, {name: 0 for name in PROTEIN_CLASSES}
    for node, text in zip(ids, texts, strict=True):
        name = list(PROTEIN_CLASSES)[int(node.lstrip("abcdefghijklmnopqrstuvwxyz_")) % 3]
        place[text] = (list(PROTEIN_CLASSES).index(name), seen[name])
        seen[name] += 1
    return ids, place


def test_protein_link_with_chain_vectors(proteins) -> None:
    ids, place = _chains(proteins)

    def along_chain(texts: Sequence[str]) -> np.ndarray:  # a class's chain on an arc of its own plane
        out = np.zeros((len(texts), 6))
        for row, text in enumerate(texts):
            c, position = place[text]
            out[row, 2 * c : 2 * c + 2] = np.cos(0.05 * position), np.sin(0.05 * position)
        return out

    result = get_task("protein-link").run(proteins, StandIn(vectors=along_chain), 0)
    metrics = result.metrics["heldout"]
    # the nearest proteins are a query's chain neighbours, and those are its held-out links
    assert metrics["mrr"] == pytest.approx(1.0) and metrics["precision@1"] == pytest.approx(1.0)
    assert metrics["recall@10"] == pytest.approx(1.0)
    heldout = (proteins.path / "heldout_nodes.txt").read_text().split()
    assert result.counts["queries"] == len(heldout) == 27  # every non-train protein has a chain edge
    assert result.counts["candidates"] == 56

    # candidates=heldout ranks only the non-train proteins; chain neighbours in train no longer count
    seen: list[str] = []

    def recorded(texts: Sequence[str]) -> np.ndarray:
        seen.extend(texts)
        return along_chain(texts)

    small = get_task("protein-link").run(proteins, StandIn(vectors=recorded), 0, candidates="heldout")
    outside = [t for s in proteins.splits if s != "train" for t in proteins.split(s)["text"]]
    assert sorted(seen) == sorted(outside) and small.counts["candidates"] == len(outside) - 1
    assert small.counts["candidate_pool"] == "heldout"
    assert small.counts["queries"] + small.counts["skipped"] == 27
    assert small.metrics["heldout"]["mrr"] == pytest.approx(1.0)  # nearest held-out chain neighbours

    # candidates=both: one embedding of every record, scored as "all" and as "heldout"
    seen.clear()
    noisy = np.random.default_rng(0).normal(size=(len(ids), 6))  # not a perfect space: the pools differ
    row_of = {text: i for i, text in enumerate(t for s in proteins.splits for t in proteins.split(s)["text"])}

    def noisy_chain(texts: Sequence[str]) -> np.ndarray:
        seen.extend(texts)
        return along_chain(texts) + 0.4 * noisy[[row_of[t] for t in texts]]

    both = get_task("protein-link").run(proteins, StandIn(vectors=noisy_chain), 0, candidates="both")
    assert len(seen) == len(ids)  # embedded once
    alone = {
        pool: get_task("protein-link").run(proteins, StandIn(vectors=noisy_chain), 0, candidates=pool)
        for pool in ("all", "heldout")
    }
    assert both.metrics["heldout"] == pytest.approx(alone["all"].metrics["heldout"])
    assert both.metrics["heldout-pool"] == pytest.approx(alone["heldout"].metrics["heldout"])
    assert both.metrics["heldout"]["mrr"] != pytest.approx(both.metrics["heldout-pool"]["mrr"])
    assert both.counts["heldout"]["candidates"] == 56
    assert both.counts["heldout-pool"]["candidates"] == len(outside) - 1
    assert both.counts["candidate_pool"] == "both"
    with pytest.raises(ValueError, match="candidates must be"):
        get_task("protein-link").run(proteins, StandIn(vectors=recorded), 0, candidates="some")

    # all vectors equal: candidates rank in dataset order, the query left out
    flat = get_task("protein-link").run(proteins, StandIn(vectors=lambda t: np.ones((len(t), 2))), 0)
    by_text = {
        text: node
        for node, text in zip(
            ids, [t for s in proteins.splits for t in proteins.split(s)["text"]], strict=True
        )
    }
    chain = {}  # (class, position) -> index in dataset order
    for text, key in place.items():
        chain[key] = ids.index(by_text[text])
    reciprocal = []
    for node in heldout:
        q = ids.index(node)
        c, position = next(key for key, index in chain.items() if index == q)
        neighbours = [chain[(c, p)] for p in (position - 1, position + 1) if (c, p) in chain]
        reciprocal.append(max(1 / (r + 1 if r < q else r) for r in neighbours))
    assert flat.metrics["heldout"]["mrr"] == pytest.approx(np.mean(reciprocal))


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


# ---------------------------------------------------------------------------------------------------
# Graded similarity
# ---------------------------------------------------------------------------------------------------


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
