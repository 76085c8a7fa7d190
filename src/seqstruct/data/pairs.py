"""Pairs for contrastive sentence-embedding training, from a prepared dataset (`seqstruct.data.prepared`).

A pair set is a `datasets.Dataset` whose first columns are the texts `anchor`, `positive` and, with hard
negatives, `negative`, in that order: sentence-transformers' MultipleNegativesRankingLoss reads its inputs
by position, the first column as anchors and the rest as candidates. Then come the ids of the records the
texts belong to, `anchor_id`, `positive_id` (`negative_id`), which the trainer must not see (its collator
would tokenise them as text): `trainer_dataset` keeps the texts only.

Kinds (`build_pairs(prepared, split, kind, ...)`):
    go-synonym     go-text: each synonym of a term -> the term's name (`positive="name"`), its definition
                   ("text") or one pair with each ("both"). A synonym equal to its partner (case aside) is
                   no pair, and repeats are dropped, as in the go-synonym-search evaluation. Both ids are
                   the term's.
    wordnet-lemma  wordnet: each lemma of a synset -> the synset's gloss. Both ids are the synset's.
    graph          any dataset with a graph (proteins: swissprot-go's shared-GO graph): each edge (u, v)
                   -> (text of u, text of v), its orientation drawn per edge. Edge weights act through
                   `max_pairs`: the kept pairs are drawn in proportion to their edges' weights. Without a
                   cap every edge gives one pair and weights cannot act, so training pairs from a graph
                   whose weights differ are refused rather than read as unweighted (held-out pairs, a
                   measurement, take every edge once).
    unsupervised   each record's text twice, (x, x): SimCSE's unsupervised setting, in which the two dropout
                   masks of the two forward passes are the only difference between anchor and positive.

Hard negatives are *graph siblings*: for an anchor record u, a record drawn uniformly from those at
distance exactly 2 from u in the split's graph (a neighbour of a neighbour of u, neither u nor adjacent to
it). graph.tsv is undirected (the recipes write is_a / hypernym / shared-GO edges without direction), so in
a hierarchy these are u's siblings (other children of its parents) but also its grandparents, grandchildren
and the co-parents of its children; without edge directions the rule cannot tell them apart. (For synonym
retrieval an ancestor is a fair negative too: the term itself should rank above its ancestors.) The
negative's text is that record's text of the same kind as the positive (a sibling's name for name pairs,
its gloss for lemma pairs, its sequence for graph pairs); siblings whose text is empty or repeats the
anchor's or the positive's are passed over. A pair whose anchor has no usable sibling keeps `negative` =
None: `trainer_dataset` trains those as plain pairs, beside the triplets, rather than invent a negative or
lose the pair.

Training pairs come from the train split and its graph.tsv only; `split="valid"` builds held-out pairs
from the valid split and the edges of graph_heldout.tsv between valid records, never touching train.
Everything is deterministic in (dataset, split, kind, options, seed): candidates are listed in split
order, then one `numpy` generator seeded with `seed` draws edge orientations, the `max_pairs` sample and
the negatives, in that order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict, Features, Value

from seqstruct.data.graph import Graph, read_edge_list
from seqstruct.data.prepared import TRAIN, Prepared

logger = logging.getLogger(__name__)

KINDS = ("go-synonym", "wordnet-lemma", "graph", "unsupervised")
AUTO = "auto"
VALID = "valid"  # the held-out split evaluation pairs come from
POSITIVES = ("name", "text", "both")  # go-synonym partners
TEXT_COLUMNS = ("anchor", "positive", "negative")
ID_COLUMNS = ("anchor_id", "positive_id", "negative_id")


class NoPairsError(ValueError):
    """A split and kind that give no pair at all."""


@dataclass(frozen=True)
class PairSet:
    """Pairs (or triplets) and what building them left out."""

    dataset: Dataset  # anchor, positive[, negative], anchor_id, positive_id[, negative_id]
    kind: str  # one of KINDS
    split: str  # the split the records came from
    candidates: int  # pairs available before the max_pairs sample
    without_negative: int  # pairs (with hard negatives asked for) whose anchor has no usable graph sibling

    def __len__(self) -> int:
        return len(self.dataset)


@dataclass(frozen=True)
class _Candidate:
    """One pair before sampling: record indices into the split and the texts."""

    anchor: int  # row of the anchor's record (the node whose siblings give the negative)
    positive: int  # row of the positive's record
    anchor_text: str
    positive_text: str
    field: str  # which column of a sibling gives the negative's text


def resolve_kind(prepared: Prepared, pairs: str, setting: str = "supervised") -> str:
    """The pair kind for `pairs` (one of KINDS, or `auto`) on `prepared` in `setting`.

    `auto` reads the train split's columns: `synonyms` and `name` (go-text) -> go-synonym, `lemmas`
    (wordnet) -> wordnet-lemma, otherwise graph when the dataset has a graph.tsv. The unsupervised setting
    always uses unsupervised pairs, whatever `pairs` says.
    """
    if setting == "unsupervised":
        return "unsupervised"
    if setting != "supervised":
        raise ValueError(f"setting must be unsupervised or supervised; got {setting!r}")
    if pairs != AUTO:
        if pairs not in KINDS:
            raise ValueError(f"pairs must be one of {[*KINDS, AUTO]}; got {pairs!r}")
        return pairs
    columns = set(prepared.split(TRAIN).column_names)
    if {"synonyms", "name"} <= columns:
        return "go-synonym"
    if "lemmas" in columns:
        return "wordnet-lemma"
    if prepared.graph_path.is_file():
        return "graph"
    raise ValueError(
        f"{prepared.path}: pairs=auto found no synonyms/name columns (go-text), no lemmas column (wordnet) "
        "and no graph.tsv; choose pairs explicitly or the unsupervised setting"
    )


def split_graph(prepared: Prepared, split: str) -> Graph | None:
    """The undirected graph over the records of `split`, in split order, or None without edges.

    train: graph.tsv (edges between train records). Any other split: the edges of graph_heldout.tsv with
    both ends in that split (its other edges reach into train or another held-out split).
    """
    ids = list(prepared.split(split)["id"])
    if split == TRAIN:
        if not prepared.graph_path.is_file():
            return None
        graph, _ = read_edge_list(prepared.graph_path, ids)
    else:
        if not prepared.heldout_graph_path.is_file():
            return None
        every = [i for name in prepared.splits for i in prepared.split(name)["id"]]
        whole, _ = read_edge_list(prepared.heldout_graph_path, every)
        position = {node: i for i, node in enumerate(every)}
        graph = whole.subgraph(np.array([position[i] for i in ids], dtype=np.int64))
    return graph if len(graph.edges) else None


class Siblings:
    """Graph siblings (records at distance exactly 2) of a graph's nodes, found once per node on demand."""

    def __init__(self, graph: Graph) -> None:
        self.neighbours = graph.neighbours()
        self._found: dict[int, np.ndarray] = {}

    def of(self, node: int) -> np.ndarray:
        """Sorted node indices at distance exactly 2 from `node`."""
        if node not in self._found:
            own = self.neighbours[node]
            reach = np.unique(np.concatenate([self.neighbours[p] for p in own])) if len(own) else own
            self._found[node] = reach[(reach != node) & ~np.isin(reach, own)]
        return self._found[node]

    def draw(
        self, node: int, rng: np.random.Generator, accept: Callable[[int], bool] | None = None
    ) -> int | None:
        """One sibling of `node`, uniformly among those `accept` lets through, or None when there is none.

        A few rejection draws first (a rejected sibling is rare), then the accepted ones listed: uniform
        either way, and no scan of a hub's thousands of siblings per pair."""
        candidates = self.of(node)
        for _ in range(4):
            if not len(candidates):
                return None
            pick = int(candidates[rng.integers(len(candidates))])
            if accept is None or accept(pick):
                return pick
        kept = [int(c) for c in candidates if accept(int(c))]
        return kept[rng.integers(len(kept))] if kept else None


def _require(rows: Dataset, columns: Sequence[str], kind: str, where: str) -> None:
    missing = [c for c in columns if c not in rows.column_names]
    if missing:
        raise ValueError(
            f"{where}: {kind} pairs need the columns {list(columns)}; the split lacks {missing} "
            f"(it has {rows.column_names})"
        )


def _go_synonym_candidates(rows: Dataset, positive: str) -> list[_Candidate]:
    if positive not in POSITIVES:
        raise ValueError(f"positive must be one of {POSITIVES}; got {positive!r}")
    fields = ("name", "text") if positive == "both" else (positive,)
    found: list[_Candidate] = []
    for row, (name, text, synonyms) in enumerate(
        zip(rows["name"], rows["text"], rows["synonyms"], strict=True)
    ):
        partners = {"name": name.strip(), "text": text.strip()}
        seen: set[str] = set()
        for synonym in synonyms or []:
            synonym = synonym.strip()
            key = synonym.lower()
            if not key or key in seen:
                continue
            seen.add(key)
            for field in fields:
                if partners[field] and key != partners[field].lower():
                    found.append(_Candidate(row, row, synonym, partners[field], field))
    return found


def _wordnet_candidates(rows: Dataset) -> list[_Candidate]:
    found: list[_Candidate] = []
    for row, (gloss, lemmas) in enumerate(zip(rows["text"], rows["lemmas"], strict=True)):
        gloss = gloss.strip()
        seen: set[str] = set()
        for lemma in lemmas or []:
            lemma = lemma.strip()
            if lemma and gloss and lemma.lower() not in seen:
                seen.add(lemma.lower())
                found.append(_Candidate(row, row, lemma, gloss, "text"))
    return found


def _graph_candidates(texts: list[str], graph: Graph, rng: np.random.Generator) -> list[_Candidate]:
    edges = graph.edges  # [E, 2]
    flip = rng.random(len(edges)) < 0.5  # [E]: which end is the anchor, so no end is always the query
    oriented = np.where(flip[:, None], edges[:, ::-1], edges)  # [E, 2]
    return [_Candidate(int(a), int(b), texts[a], texts[b], "text") for a, b in oriented.tolist()]


def build_pairs(
    prepared: Prepared,
    split: str,
    kind: str,
    *,
    hard_negatives: bool = False,
    max_pairs: int = 0,
    seed: int = 0,
    positive: str = "name",
) -> PairSet:
    """Pairs of `kind` (one of KINDS) from the records of `split`; see the module docstring for each kind.

    `max_pairs` > 0 keeps a seeded sample of that many (in split order); `hard_negatives` adds a graph
    sibling's text per pair (None where the anchor has no usable sibling). NoPairsError when none come out.
    """
    if kind not in KINDS:
        raise ValueError(f"pair kind must be one of {KINDS}; got {kind!r}")
    if max_pairs < 0:
        raise ValueError(f"max_pairs must be >= 0 (0 = all); got {max_pairs}")
    if hard_negatives and kind == "unsupervised":
        raise ValueError("hard negatives need supervised pairs: unsupervised pairs have no graph siblings")
    rows = prepared.split(split)
    where = f"{prepared.path} split {split!r}"
    rng = np.random.default_rng(seed)
    graph = split_graph(prepared, split) if kind == "graph" or hard_negatives else None
    if graph is None and (kind == "graph" or hard_negatives):
        reason = "graph pairs" if kind == "graph" else "hard negatives (graph siblings)"
        source = "graph.tsv" if split == TRAIN else f"graph_heldout.tsv edges inside {split!r}"
        raise ValueError(f"{where}: {reason} need a graph, and the dataset has no edge in {source}")

    if kind == "go-synonym":
        _require(rows, ("name", "text", "synonyms"), kind, where)
        candidates = _go_synonym_candidates(rows, positive)
    elif kind == "wordnet-lemma":
        _require(rows, ("text", "lemmas"), kind, where)
        candidates = _wordnet_candidates(rows)
    elif kind == "graph":
        candidates = _graph_candidates(list(rows["text"]), graph, rng)
    else:
        candidates = [_Candidate(i, i, t, t, "text") for i, t in enumerate(rows["text"])]
    available = len(candidates)
    weighted = kind == "graph" and graph is not None and bool(np.ptp(graph.weights) > 0)
    # Training pairs only: held-out pairs are a measurement, every edge once.
    if weighted and split == TRAIN and not (max_pairs and available > max_pairs):
        raise ValueError(
            f"{where}: the graph's edge weights differ, and graph pairs take every edge once, so they could "
            f"not act; give max_pairs < {available} to draw pairs in proportion to weight, or drop the "
            "weight column"
        )
    if max_pairs and available > max_pairs:
        chance = graph.weights / graph.weights.sum() if weighted else None  # [E], candidates in edge order
        keep = np.sort(rng.choice(available, max_pairs, replace=False, p=chance))
        candidates = [candidates[i] for i in keep]

    ids = list(rows["id"])
    columns: dict[str, list[Any]] = {name: [] for name in (*TEXT_COLUMNS, *ID_COLUMNS)}
    missing = 0
    if hard_negatives:
        siblings = Siblings(graph)
        # stripped once: a negative's text is compared with the pair's on every draw
        field_texts = {
            field: [t.strip() for t in rows[field]] for field in sorted({c.field for c in candidates})
        }
    for candidate in candidates:
        if hard_negatives:
            texts = field_texts[candidate.field]
            taken = {"", candidate.anchor_text, candidate.positive_text}
            # The test is called inside draw, within this iteration, so it sees this pair's texts.
            sibling = siblings.draw(candidate.anchor, rng, lambda i: texts[i] not in taken)  # noqa: B023
            negative = None if sibling is None else texts[sibling]
            missing += sibling is None
            columns["negative"].append(negative)
            columns["negative_id"].append(None if sibling is None else ids[sibling])
        columns["anchor"].append(candidate.anchor_text)
        columns["positive"].append(candidate.positive_text)
        columns["anchor_id"].append(ids[candidate.anchor])
        columns["positive_id"].append(ids[candidate.positive])
    if not hard_negatives:
        del columns["negative"], columns["negative_id"]
    if not columns["anchor"]:
        raise NoPairsError(f"{where}: no {kind} pairs")
    order = [c for c in (*TEXT_COLUMNS, *ID_COLUMNS) if c in columns]
    features = Features({name: Value("string") for name in order})  # typed even where all negatives are None
    dataset = Dataset.from_dict({name: columns[name] for name in order}, features=features)
    logger.info(
        "%s: %d %s pairs from split %r (%d available%s)",
        prepared.path,
        len(dataset),
        kind,
        split,
        available,
        f"; {missing} without a hard negative (no graph sibling)" if hard_negatives else "",
    )
    return PairSet(dataset, kind, split, available, missing)


def heldout_pairs(
    prepared: Prepared,
    kind: str,
    split: str = VALID,
    *,
    max_pairs: int = 0,
    seed: int = 0,
    positive: str = "name",
) -> PairSet | None:
    """Held-out pairs of `kind` from `split` (no hard negatives), for an evaluation loss; None when the
    dataset has no such split, or (graph pairs) no held-out edge inside it, or no pair comes out."""
    if split == TRAIN:
        raise ValueError("held-out pairs come from a split other than train")
    if split not in prepared.splits:
        logger.info("%s: no %r split, so no held-out pairs", prepared.path, split)
        return None
    if kind == "graph" and split_graph(prepared, split) is None:
        logger.info(
            "%s: no graph_heldout.tsv edge inside split %r, so no held-out pairs", prepared.path, split
        )
        return None
    try:
        return build_pairs(prepared, split, kind, max_pairs=max_pairs, seed=seed, positive=positive)
    except NoPairsError:
        logger.info("%s: split %r yields no %s pairs", prepared.path, split, kind)
        return None


def trainer_dataset(pairs: PairSet) -> Dataset | DatasetDict:
    """What the trainer sees: the text columns only, anchor first. Pairs with and without a hard negative
    become two datasets of a DatasetDict (sentence-transformers then draws each batch from one of them,
    in proportion to their sizes), since a column cannot be missing in some rows of a batch."""
    dataset = pairs.dataset
    if "negative" not in dataset.column_names:
        return dataset.select_columns(["anchor", "positive"])
    has = np.array([n is not None for n in dataset["negative"]], dtype=bool)
    parts = {
        "triplets": dataset.select(np.flatnonzero(has)).select_columns(["anchor", "positive", "negative"]),
        "pairs": dataset.select(np.flatnonzero(~has)).select_columns(["anchor", "positive"]),
    }
    parts = {name: part for name, part in parts.items() if len(part)}
    return next(iter(parts.values())) if len(parts) == 1 else DatasetDict(parts)
