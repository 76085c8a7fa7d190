"""Baselines, methods that need no pretrained model: label frequencies (naive), a protein's k-mer
composition, TF-IDF and BM25 of a text, and homology transfer (mmseqs)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

import numpy as np
import scipy.sparse as sp

from seqstruct.data.fasta import STANDARD_RESIDUES
from seqstruct.evaluation.methods.base import Method, MethodOptions, NotApplicable, capped
from seqstruct.evaluation.probe import Features
from seqstruct.evaluation.retrieval import BM25, WORD_PATTERN, tfidf_search
from seqstruct.evaluation.tasks import Classification


def kmer_composition(sequences: Sequence[str], k: int = 2, alphabet: str = STANDARD_RESIDUES) -> np.ndarray:
    """[N, |alphabet|^k] k-mer frequencies of each sequence (counts / number of k-mers), float32.

    k-mers with a letter outside `alphabet` (X, B, ...) are not counted; a sequence shorter than k, or
    with no countable k-mer, gets a row of zeros.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    index = {"".join(kmer): i for i, kmer in enumerate(product(alphabet, repeat=k))}
    out = np.zeros((len(sequences), len(index)), dtype=np.float32)
    for row, sequence in enumerate(sequences):
        hits = [
            index[sequence[i : i + k]] for i in range(len(sequence) - k + 1) if sequence[i : i + k] in index
        ]
        if hits:
            out[row] = np.bincount(hits, minlength=len(index)) / len(hits)
    return out


class Naive(Method):
    """Every input gets the train frequency of each term (multi-label) or of each class (single-label): no
    input is looked at. CAFA's "naive" baseline (Radivojac et al. 2013)."""

    name = "baseline:naive"
    reads = frozenset({"max_train"})

    def embed(self, texts: Sequence[str], kind: str, ids: Sequence[str] | None = None) -> np.ndarray:
        raise NotApplicable(f"{self.name} predicts label frequencies; it has no embedding")

    def classify(self, problem: Classification, seed: int) -> dict[str, np.ndarray]:
        self.check_kind(problem.kind)
        problem = capped(problem, self.options.max_train)
        targets = problem.train.targets
        if problem.multilabel:
            prior = targets.astype(np.float64).mean(axis=0)  # [C]
        else:
            prior = np.bincount(targets, minlength=len(problem.classes)) / len(targets)  # [C]
        self.last_fit = {"prior": "train frequencies", "train_rows": len(targets)}
        return {split: np.tile(prior, (len(part), 1)) for split, part in problem.tests.items()}


class Composition(Method):
    """k-mer composition of a protein (k = 1: amino-acid composition)."""

    kinds = ("protein",)

    def __init__(self, k: int, name: str, options: MethodOptions | None = None) -> None:
        super().__init__(options)
        self.k, self.name = k, name

    def features(self, texts: Sequence[str], kind: str) -> np.ndarray:
        self.check_kind(kind)
        return kmer_composition([t.upper() for t in texts], k=self.k)  # [N, 20^k]


class Tfidf(Method):
    """TF-IDF of words and word bigrams (sublinear tf), fitted on the train split (classification: terms
    of at least two train texts) or on the corpus (retrieval: every term)."""

    name = "baseline:tfidf"
    kinds = ("text",)

    def split_features(self, problem: Classification) -> list[Features]:
        from sklearn.feature_extraction.text import TfidfVectorizer

        # min_df=2: a word or bigram of a single train text cannot generalise, and halves the probe's time.
        vectorizer = TfidfVectorizer(
            ngram_range=(1, 2),
            sublinear_tf=True,
            token_pattern=WORD_PATTERN,
            min_df=min(2, len(problem.train)),
        )
        train = vectorizer.fit_transform(problem.train.texts)  # [N, V] sparse
        others = [vectorizer.transform(part.texts) for part in (problem.valid, *problem.tests.values())]
        return [train, *others]

    def embed(self, texts: Sequence[str], kind: str, ids: Sequence[str] | None = None) -> sp.csr_matrix:
        """[N, V] TF-IDF rows (sparse, L2-normalised), idf fitted on `texts` themselves and every n-gram kept,
        as for retrieval: the vectors of one call share a space, those of two calls do not."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.check_kind(kind)
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=WORD_PATTERN)
        return vectorizer.fit_transform(texts).tocsr()

    def search(self, queries: Sequence[str], corpus: Sequence[str], k: int, kind: str) -> np.ndarray:
        self.check_kind(kind)
        return tfidf_search(queries, corpus, k)[0]


class Bm25(Method):
    """Okapi BM25 retrieval (`seqstruct.evaluation.retrieval.BM25`)."""

    name = "baseline:bm25"
    kinds = ("text",)
    reads = frozenset({"k1", "b"})

    def classify(self, problem: Classification, seed: int) -> dict[str, np.ndarray]:
        raise NotApplicable(f"{self.name} ranks documents for a query; it does not classify")

    def embed(self, texts: Sequence[str], kind: str, ids: Sequence[str] | None = None) -> np.ndarray:
        raise NotApplicable(f"{self.name} ranks documents for a query; it has no embedding")

    def search(self, queries: Sequence[str], corpus: Sequence[str], k: int, kind: str) -> np.ndarray:
        self.check_kind(kind)
        return BM25(corpus, k1=self.options.k1, b=self.options.b).search(queries, k)[0]


class Homology(Method):
    """Homology transfer (the CAFA BLAST baseline, with mmseqs): a test protein's score for a term is the
    highest sequence identity among its hits (up to max_hits) in train annotated with that term, so the
    best hit's terms score its identity; a class (single-label) is the best hit's (highest bit score).
    A protein without hits scores 0 on every term / gets the train majority class."""

    name = "baseline:mmseqs"
    kinds = ("protein",)
    # max_train: the same fixed sample of labelled train proteins as the probes get (an equal label budget)
    reads = frozenset({"max_hits", "max_train"})

    def embed(self, texts: Sequence[str], kind: str, ids: Sequence[str] | None = None) -> np.ndarray:
        raise NotApplicable(f"{self.name} transfers labels from hits; it has no embedding")

    def search(self, queries: Sequence[str], corpus: Sequence[str], k: int, kind: str) -> np.ndarray:
        raise NotApplicable(f"{self.name} applies to protein classification tasks only")

    def classify(self, problem: Classification, seed: int) -> dict[str, np.ndarray]:
        from seqstruct.data.homology import search

        self.check_kind(problem.kind)
        problem = capped(problem, self.options.max_train)
        train = problem.train
        row = {node: i for i, node in enumerate(train.ids)}
        majority = int(np.bincount(train.targets).argmax()) if not problem.multilabel else -1
        out, without = {}, {}
        for split, part in problem.tests.items():
            hits = search(part.ids, part.texts, train.ids, train.texts, max_hits=self.options.max_hits)
            query = {node: i for i, node in enumerate(part.ids)}
            scores = np.zeros((len(part), len(problem.classes)))  # [n, C]
            best_bits = np.full(len(part), -np.inf)  # [n]
            for hit in hits:
                if hit.query not in query or hit.target not in row:
                    raise ValueError(f"homology search returned a hit {hit} outside the queries or targets")
                if not 0.0 <= hit.identity <= 1.0:
                    raise ValueError(f"hit {hit}: identity must be a fraction in [0, 1]")
                i, j = query[hit.query], row[hit.target]
                if problem.multilabel:
                    scores[i] = np.maximum(scores[i], hit.identity * train.targets[j])
                elif hit.bits > best_bits[i]:
                    scores[i] = 0.0
                    scores[i, train.targets[j]] = 1.0
                best_bits[i] = max(best_bits[i], hit.bits)
            missing = ~np.isfinite(best_bits)
            if not problem.multilabel:
                scores[missing, majority] = 1.0
            out[split], without[split] = scores, int(missing.sum())
        self.last_fit = {"queries_without_hits": without}
        return out
