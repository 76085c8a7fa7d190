"""Graded text similarity from a real ontology: GO definitions scored by the Lin similarity of their terms.

The evaluation. Two GO terms of the same namespace are as related as the most informative ancestor they
share. With Seco et al.'s intrinsic information content (IC), computed from the is_a DAG alone (no
annotation corpus, so it does not depend on which genes happen to be studied):

    IC(t)     = 1 − log(1 + #descendants(t)) / log(#terms in t's namespace)     leaves 1, root 0
    Lin(a, b) = 2 · IC(MICA(a, b)) / (IC(a) + IC(b))                            in [0, 1], Lin(a, a) = 1

where the descendants are is_a descendants (the term itself not counted) and MICA, the most informative
common ancestor, is the common ancestor of highest IC, counting a and b themselves as their own ancestors
(so Lin(a, b) = 2·IC(a)/(IC(a)+IC(b)) when a is an ancestor of b). Lin (1998) normalises by the two
terms' own IC, so siblings deep in the DAG score high and two unrelated specific terms score near 0.

The texts compared are the two terms' definitions, never their names: names share words with their
ancestors' names ("positive regulation of X"), which would reward string overlap, while definitions are
free text written by curators. A model's score is the Spearman correlation between the cosine of its
embeddings of the two definitions and Lin, over pairs of held-out terms (terms whose texts were not
trained on), computed by sentence-transformers' `EmbeddingSimilarityEvaluator`.

Pairs are sampled deterministically (a seeded `random.Random`) so that Lin covers its range instead of
piling up near 0, as uniformly random pairs of a 28,000-term DAG would: about half are random pairs of
the same namespace, half share a parent or grandparent (siblings and cousins, Lin mostly 0.3–0.9).

The `go-similarity` task (`seqstruct.evaluation.tasks`) runs this on a prepared go-text dataset for any
method with an embedding: `EmbeddingFunctionModel` gives the evaluator the `encode` it calls around the
method's `embed` (dense vectors, or TF-IDF's sparse ones), so the numbers are the evaluator's own. Lin is
computed over the whole is_a DAG of the GO SQLite the dataset was prepared from (`go_lin_similarity`),
not over the dataset's graph, which lacks the terms without a definition and the held-out terms' edges.

References: N. Seco, T. Veale, J. Hayes, "An intrinsic information content metric for semantic
similarity in WordNet", ECAI 2004; D. Lin, "An information-theoretic definition of similarity",
ICML 1998. Data: the Gene Ontology (CC BY 4.0), see `seqstruct.data.sources.go`.

`embedding_agreement` is the other measure used here: the cosine between two models' embeddings of the
same texts (e.g. a FAVOR+ student against its exact-attention teacher), summarised by mean and minimum.
"""

from __future__ import annotations

import functools
import logging
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from seqstruct.data.sources.go import GeneOntology, read_go, resolve_go_path

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------
# Information content and Lin similarity over an is_a DAG
# ---------------------------------------------------------------------------------------------------


def ancestor_sets(terms: Iterable[str], parents: Mapping[str, Sequence[str]]) -> dict[str, frozenset[str]]:
    """Term -> all its ancestors through `parents`, the term itself included.

    Iterative (GO is deep enough that recursion is a risk for other ontologies); a cycle raises.
    """
    done: dict[str, frozenset[str]] = {}
    for start in terms:
        if start in done:
            continue
        stack, on_path = [start], {start}
        while stack:
            term = stack[-1]
            pending = [p for p in parents.get(term, ()) if p not in done]
            if pending:
                for parent in pending:
                    if parent in on_path:
                        raise ValueError(f"is_a cycle through {parent!r}")
                stack.append(pending[0])
                on_path.add(pending[0])
                continue
            done[term] = frozenset({term}).union(*(done[p] for p in parents.get(term, ())))
            stack.pop()
            on_path.discard(term)
    return done


def intrinsic_information_content(
    namespace_of: Mapping[str, str], ancestors: Mapping[str, frozenset[str]]
) -> dict[str, float]:
    """Seco et al.'s IC(t) = 1 − log(1 + #descendants(t)) / log(#terms in t's namespace).

    `namespace_of` lists every term of the ontology (the namespace sizes come from it); `ancestors` is
    `ancestor_sets` over the same terms. A namespace of a single term gets IC 1 (nothing to normalise by).
    """
    descendants: Counter[str] = Counter()
    for term in namespace_of:
        for ancestor in ancestors[term]:
            if ancestor != term:
                descendants[ancestor] += 1
    sizes = Counter(namespace_of.values())
    ic = {}
    for term, namespace in namespace_of.items():
        denominator = math.log(sizes[namespace])
        ic[term] = 1.0 - math.log1p(descendants[term]) / denominator if denominator > 0 else 1.0
    return ic


def lin_similarity(a: str, b: str, ancestors: Mapping[str, frozenset[str]], ic: Mapping[str, float]) -> float:
    """Lin(a, b) = 2·IC(MICA)/(IC(a)+IC(b)); 0 when they share no ancestor, 1 for a term with itself."""
    if a == b:
        return 1.0
    common = ancestors[a] & ancestors[b]
    if not common:
        return 0.0
    denominator = ic[a] + ic[b]
    if denominator == 0.0:  # two roots: only possible when a == b within one namespace
        return 1.0
    return 2.0 * max(ic[c] for c in common) / denominator


class LinSimilarity:
    """Lin similarity with intrinsic IC over one ontology's is_a DAG (precomputed ancestors and IC)."""

    def __init__(self, namespace_of: Mapping[str, str], parents: Mapping[str, Sequence[str]]) -> None:
        self.namespace_of = dict(namespace_of)
        self.parents = {t: list(ps) for t, ps in parents.items()}
        self.ancestors = ancestor_sets(sorted(self.namespace_of), self.parents)
        self.ic = intrinsic_information_content(self.namespace_of, self.ancestors)

    @classmethod
    def from_go(cls, go: GeneOntology) -> LinSimilarity:
        return cls({t.id: t.namespace for t in go.terms.values()}, go.is_a)

    def __call__(self, a: str, b: str) -> float:
        return lin_similarity(a, b, self.ancestors, self.ic)


@functools.lru_cache(maxsize=2)
def _read_lin(path: str, mtime_ns: int) -> tuple[GeneOntology, LinSimilarity]:
    # mtime_ns is part of the key only: a file rewritten in place is read again.
    go = read_go(path)
    return go, LinSimilarity.from_go(go)


def go_lin_similarity(path: str | Path | None = None) -> tuple[GeneOntology, LinSimilarity]:
    """The ontology in the GO SQLite at `path` (see `resolve_go_path` for where it is looked for) and Lin
    similarity over its whole is_a DAG, every term counted, with a definition or not. Reading and the IC
    take seconds on the full GO, so the last two files read are kept for the process."""
    resolved = resolve_go_path(path).resolve()
    return _read_lin(str(resolved), resolved.stat().st_mtime_ns)


# ---------------------------------------------------------------------------------------------------
# Pairs
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimilarityPairs:
    """Term pairs with their texts and gold score, ready for `EmbeddingSimilarityEvaluator`."""

    ids1: list[str]
    ids2: list[str]
    sentences1: list[str]
    sentences2: list[str]
    scores: list[float]  # Lin similarity of the two terms
    kinds: list[str]  # "random" (same namespace) or "related" (shared parent or grandparent)

    def __len__(self) -> int:
        return len(self.scores)

    def texts(self) -> list[str]:
        """The distinct texts of all pairs, in first-appearance order."""
        return list(dict.fromkeys(self.sentences1 + self.sentences2))

    def rows(self) -> list[dict[str, object]]:
        return [
            {"id1": a, "id2": b, "lin": s, "kind": k}
            for a, b, s, k in zip(self.ids1, self.ids2, self.scores, self.kinds, strict=True)
        ]


def sample_pairs(
    lin: LinSimilarity,
    texts: Mapping[str, str],
    n: int,
    seed: int,
    related_fraction: float = 0.5,
) -> SimilarityPairs:
    """`n` distinct unordered pairs of terms from `texts` (term -> text, e.g. held-out definitions).

    `round(n·related_fraction)` pairs share a parent or grandparent; the rest are random pairs within a
    namespace. Deterministic in (`texts`' keys, `seed`). Fewer pairs are returned, with a warning, when the
    terms cannot make `n` distinct ones.
    """
    if not 0.0 <= related_fraction <= 1.0:
        raise ValueError(f"related_fraction must be in [0, 1], got {related_fraction}")
    candidates = sorted(t for t in texts if t in lin.namespace_of)
    by_namespace: dict[str, list[str]] = defaultdict(list)
    for term in candidates:
        by_namespace[lin.namespace_of[term]].append(term)

    # Up to two levels up, and the inverse: which candidates sit under each such ancestor.
    near: dict[str, list[str]] = {}
    under: dict[str, list[str]] = defaultdict(list)
    for term in candidates:
        level1 = lin.parents.get(term, [])
        level2 = {g for p in level1 for g in lin.parents.get(p, [])}
        near[term] = sorted(set(level1) | level2)
        for ancestor in near[term]:
            under[ancestor].append(term)

    rng = random.Random(seed)
    seen: set[tuple[str, str]] = set()
    pairs: list[tuple[str, str, str]] = []

    def draw(kind: str, wanted: int) -> None:
        added, attempts = 0, 0
        while added < wanted and attempts < 50 * wanted:
            attempts += 1
            a = rng.choice(candidates)
            if kind == "related":
                if not near[a]:
                    continue
                pool = under[rng.choice(near[a])]
            else:
                pool = by_namespace[lin.namespace_of[a]]
            b = rng.choice(pool)
            key = (a, b) if a < b else (b, a)
            if a == b or key in seen:
                continue
            seen.add(key)
            pairs.append((a, b, kind))
            added += 1

    if len(candidates) >= 2:
        n_related = round(n * related_fraction)
        draw("related", n_related)
        draw("random", n - n_related)
    if len(pairs) < n:
        logger.warning("asked for %d similarity pairs, %d terms gave %d", n, len(candidates), len(pairs))
    return SimilarityPairs(
        ids1=[a for a, _, _ in pairs],
        ids2=[b for _, b, _ in pairs],
        sentences1=[texts[a] for a, _, _ in pairs],
        sentences2=[texts[b] for _, b, _ in pairs],
        scores=[lin(a, b) for a, b, _ in pairs],
        kinds=[k for _, _, k in pairs],
    )


# ---------------------------------------------------------------------------------------------------
# Measures on sentence-transformers models
# ---------------------------------------------------------------------------------------------------


Vectors = np.ndarray | sp.spmatrix  # [N, D] dense embeddings, or sparse term weights (TF-IDF)


class _NoModelCard:
    """Stands in for a SentenceTransformer's model card: evaluators record their metrics in it; a seqstruct
    task reports them itself."""

    def set_evaluation_metrics(self, *args: Any, **kwargs: Any) -> None:
        pass


def sparse_tensor(x: sp.spmatrix) -> torch.Tensor:
    """A scipy sparse [N, D] matrix as a coalesced float32 torch sparse COO tensor, the form in which
    sentence-transformers' SparseEncoder returns embeddings and its similarity functions take them."""
    import torch

    coo = sp.coo_matrix(x)
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))  # [2, nnz]
    values = torch.from_numpy(coo.data.astype(np.float32))  # [nnz]
    return torch.sparse_coo_tensor(indices, values, coo.shape, check_invariants=True).coalesce()


class EmbeddingFunctionModel:
    """The part of a SentenceTransformer that `EmbeddingSimilarityEvaluator` calls (`encode`, the model card,
    `similarity_fn_name`), around any function texts -> vectors: a seqstruct method's `embed`, an encoder
    outside sentence-transformers, a baseline's TF-IDF. It lets the field's evaluator score what is not a
    SentenceTransformer, instead of re-implementing its metrics.

    Dense vectors come back as numpy arrays; sparse ones (scipy) as a torch sparse tensor, as a
    SparseEncoder returns them, which the evaluator's cosine takes as it is. Quantised precisions and
    truncated dimensions are not offered: asking for them is an error, not a silent float32.
    """

    similarity_fn_name = "cosine"

    def __init__(self, embed: Callable[[list[str]], Vectors]) -> None:
        self.embed = embed
        self.model_card_data = _NoModelCard()

    def encode(
        self,
        sentences: str | Sequence[str],
        batch_size: int | None = None,  # the function batches as it likes
        show_progress_bar: bool | None = None,
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        precision: str | None = None,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
    ) -> np.ndarray | torch.Tensor:
        if precision not in (None, "float32") or truncate_dim is not None:
            raise ValueError(
                f"{type(self).__name__} gives float32 vectors of full dimension; got precision={precision!r}, "
                f"truncate_dim={truncate_dim!r}"
            )
        texts = [sentences] if isinstance(sentences, str) else list(sentences)
        vectors = self.embed(texts)
        if vectors.shape[0] != len(texts):
            raise ValueError(f"the embedding function gave {vectors.shape[0]} vectors for {len(texts)} texts")
        if sp.issparse(vectors):
            if normalize_embeddings:
                from sklearn.preprocessing import normalize

                vectors = normalize(vectors)
            return sparse_tensor(vectors)
        dense = np.asarray(vectors, dtype=np.float32)  # [N, D]
        if normalize_embeddings:
            norms = np.linalg.norm(dense, axis=1, keepdims=True)  # [N, 1]
            dense = dense / np.where(norms > 0, norms, 1.0)
        if convert_to_tensor:
            import torch

            return torch.from_numpy(dense)
        return dense


def _rows(matrix: np.ndarray | torch.Tensor, rows: list[int]) -> np.ndarray | torch.Tensor:
    """Rows of a dense array or of a torch sparse tensor."""
    if isinstance(matrix, np.ndarray):
        return matrix[rows]
    import torch

    if matrix.is_sparse:
        return matrix.index_select(0, torch.tensor(rows, dtype=torch.long))
    return matrix[rows]


def similarity_evaluator(
    pairs: SimilarityPairs,
    batch_size: int = 32,
    name: str = "go_lin",
    embeddings: Mapping[str, np.ndarray] | None = None,
) -> EmbeddingSimilarityEvaluator:
    """sentence-transformers' evaluator for these pairs: Spearman (and Pearson) of cosine against Lin.

    Pairs share texts (a term appears in several), so each distinct text is embedded once per call, all in
    one `encode` call (a TF-IDF fitted on them gives all of them one space); with `embeddings` (text ->
    vector, from the model about to be evaluated) none is embedded again.
    """
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    class DistinctTextsEvaluator(EmbeddingSimilarityEvaluator):
        def __call__(self, model, *args, **kwargs):
            if embeddings is not None:
                texts = list(embeddings)
                matrix = np.stack([np.asarray(embeddings[t]) for t in texts])
            else:
                texts = sorted(set(self.sentences1) | set(self.sentences2))
                matrix = super().embed_inputs(model, texts)
            self._cache = ({text: i for i, text in enumerate(texts)}, matrix)
            try:
                return super().__call__(model, *args, **kwargs)
            finally:
                self._cache = None

        def embed_inputs(self, model, sentences, **kwargs):
            cache = getattr(self, "_cache", None)
            if cache is None or kwargs:
                return super().embed_inputs(model, sentences, **kwargs)
            position, matrix = cache
            return _rows(matrix, [position[s] for s in sentences])

    return DistinctTextsEvaluator(
        pairs.sentences1,
        pairs.sentences2,
        pairs.scores,
        batch_size=batch_size,
        main_similarity="cosine",
        name=name,
        write_csv=False,
    )


def similarity_correlations(
    model: SentenceTransformer | EmbeddingFunctionModel,
    pairs: SimilarityPairs,
    batch_size: int = 32,
    embeddings: Mapping[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """{"spearman", "pearson"}: correlations between the model's cosine of each pair's texts and the
    pair's Lin score, as `EmbeddingSimilarityEvaluator` computes them (scipy's spearmanr and pearsonr).

    `embeddings`: the model's embeddings of the pairs' texts, when already computed (text -> vector)."""
    import torch

    evaluator = similarity_evaluator(pairs, batch_size, embeddings=embeddings)
    # Sparse vectors (TF-IDF) are checked as the evaluator builds tensors from them, and torch stays quiet.
    with torch.sparse.check_sparse_tensor_invariants():
        found = evaluator(model)
    return {
        "spearman": float(found[f"{evaluator.name}_spearman_cosine"]),
        "pearson": float(found[f"{evaluator.name}_pearson_cosine"]),
    }


def similarity_spearman(
    model: SentenceTransformer,
    pairs: SimilarityPairs,
    batch_size: int = 32,
    embeddings: Mapping[str, np.ndarray] | None = None,
) -> float:
    """Spearman correlation between the model's cosine of each pair's texts and the pair's Lin score.

    `embeddings`: the model's embeddings of the pairs' texts, when already computed (text -> vector)."""
    return similarity_correlations(model, pairs, batch_size, embeddings)["spearman"]


def encode_normalized(model: SentenceTransformer, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """The model's embeddings of `texts` (its own modules: pooling, normalisation), L2-normalised, [N, D]."""
    return model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True)


def cosine_agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Row-wise cosine between two [N, D] embedding matrices of the same texts: mean, min, p05, median."""
    if a.shape != b.shape or a.ndim != 2 or len(a) == 0:
        raise ValueError(f"expected two equal, non-empty [N, D] matrices, got {a.shape} and {b.shape}")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cosine = np.sum(a64 * b64, axis=1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))
    return {
        "mean": float(cosine.mean()),
        "min": float(cosine.min()),
        "p05": float(np.percentile(cosine, 5)),
        "median": float(np.median(cosine)),
        "n": len(cosine),
    }


def embedding_agreement(
    model_a: SentenceTransformer, model_b: SentenceTransformer, texts: Sequence[str], batch_size: int = 32
) -> dict[str, float]:
    """Cosine between the two models' embeddings of each text, summarised (see `cosine_agreement`).

    Each model embeds with its own modules (pooling, normalisation); the cosine is taken afterwards, so
    it does not depend on whether a model normalises.
    """
    if not texts:
        raise ValueError("embedding_agreement needs at least one text")
    return cosine_agreement(
        encode_normalized(model_a, texts, batch_size), encode_normalized(model_b, texts, batch_size)
    )
