"""Text retrieval tasks: find a GO term by a synonym, a WordNet synset by one of its words. MRR@10,
nDCG@10 and recall@1/5/10 of the method's ranking (`method.search`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from seqstruct.data.prepared import Prepared
from seqstruct.evaluation.retrieval import ranking_metrics
from seqstruct.evaluation.tasks.registry import Method, TaskResult, capped_sample, register_task, split_column


@dataclass
class QuerySample:
    """The search tasks' shared options: queries drawn from `split`, a seeded sample (sample_seed) of at
    most `cap` of them (0: all), each ranked `k` deep."""

    split: str = "test"
    cap: int = 2000
    sample_seed: int = 0
    k: int = 10


@register_task("go-synonym-search", dataset="go-text", kind="text")
@dataclass
class SynonymSearchTask(QuerySample):
    """Find a GO term by a synonym: queries are synonyms of the terms of `split` (a seeded sample of at most
    `cap`), the corpus is the names of all terms of every split, the relevant item a query's own term.
    MRR@10, nDCG@10, recall@1/5/10. A synonym equal to its own term's name (case aside) is no test and
    is dropped, as are repeats."""

    name_column: str = "name"
    synonym_column: str = "synonyms"

    def run(self, data: Prepared, method: Method, seed: int) -> TaskResult:
        queries, targets, names, available = self.queries(data)
        metrics = _search(method, queries, names, [[t] for t in targets], self.k, data.info.kind)
        counts = {"queries": len(queries), "synonyms": available, "corpus": len(names), "cap": self.cap}
        return TaskResult({self.split: metrics}, counts)

    def queries(self, data: Prepared) -> tuple[list[str], list[int], list[str], int]:
        """The sampled queries, the row of each one's own term among `names` (the names of every split, in
        split order: the corpus), those names, and how many queries there were before sampling."""
        ids = [i for s in data.splits for i in data.split(s)["id"]]
        names = [n for s in data.splits for n in split_column(data, s, self.name_column)]
        position = {node: j for j, node in enumerate(ids)}
        queries, targets, seen = [], [], set()
        rows = data.split(self.split)
        for node, synonyms in zip(
            rows["id"], split_column(data, self.split, self.synonym_column), strict=True
        ):
            own = names[position[node]].strip().lower()
            for synonym in synonyms or []:
                key = (synonym.strip().lower(), node)
                if key[0] and key[0] != own and key not in seen:
                    seen.add(key)
                    queries.append(synonym.strip())
                    targets.append(position[node])
        if not queries:
            raise ValueError(f"{data.path}: split {self.split!r} has no synonym to query with")
        pick = capped_sample(len(queries), self.cap, self.sample_seed)
        return [queries[i] for i in pick], [targets[i] for i in pick], names, len(queries)


RANK_KS = (1, 5, 10)  # recall@k of the retrieval tasks
RANK_CUTOFF = 10  # MRR@10 and nDCG@10


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
@dataclass
class LemmaSearchTask(QuerySample):
    """Find a WordNet synset by one of its words: queries are the distinct lemmas of the synsets of `split`
    (case aside; a seeded sample of at most `cap`), the corpus is the glosses of every synset of `split`,
    and a query's relevant documents are the glosses of all its synsets there (a polysemous word has
    several). MRR@10, nDCG@10, recall@1/5/10.

    examples=False (default) keeps a gloss's definition only: its quoted usage examples most often contain
    the lemma itself ("the dog barked all night"), which would turn the search into string matching.
    """

    lemma_column: str = "lemmas"
    examples: bool = False

    def run(self, data: Prepared, method: Method, seed: int) -> TaskResult:
        glosses = split_column(data, self.split, "text")
        corpus = glosses if self.examples else [gloss_definition(g) for g in glosses]
        synsets: dict[str, list[int]] = {}  # case-folded lemma -> rows of its synsets
        spelling: dict[str, str] = {}  # case-folded lemma -> its first spelling, the query text
        for row, lemmas in enumerate(split_column(data, self.split, self.lemma_column)):
            for lemma in lemmas or []:
                key = lemma.strip().casefold()
                if key and row not in synsets.setdefault(key, []):
                    synsets[key].append(row)
                    spelling.setdefault(key, lemma.strip())
        if not synsets:
            raise ValueError(f"{data.path}: split {self.split!r} has no lemma to query with")
        keys = list(synsets)
        keys = [keys[i] for i in capped_sample(len(keys), self.cap, self.sample_seed)]
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
