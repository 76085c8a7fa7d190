"""The sequence model every synthetic generator shares: a node's latent signal drives a Markov chain over
the 20 amino-acid letters; and the assembly of a generated graph, its labels and signal into a dataset.

Sequence model (shared by all generators)
-----------------------------------------
Each node i has a latent signal vector s_i in R^r. Its sequence is a first-order Markov chain over the
20 standard amino-acid letters `ACDEFGHIKLMNPQRSTVWY` (so the protein tokenizer works unchanged), with
transition logits

    T(s) = B + signal * sum_k s_k W_k            B, W_k: [20, 20]; row a = logits of the letter after a

- B ~ N(0, background_scale^2) is a background grammar shared by every node: masked-LM has strong
  local structure to learn that says nothing about any label.
- W_1..W_r ~ N(0, 1) are fixed signal matrices. B and W depend on the seed only (B is drawn first, so it
  does not change with r).
- Signals are centred over the nodes and scaled to unit RMS norm (sqrt(mean_i |s_i|^2) = 1) in every
  generator, so `signal` means the same everywhere: the standard deviation of the label-driven
  perturbation of each transition logit. Centring only moves the common part of s into the grammar;
  the differences between nodes, which carry the labels, are kept.
- The first letter is drawn from the node's stationary distribution (its chain run to equilibrium), so
  no position is special; lengths are uniform in [min_length, max_length].
- `signal` is small enough that one letter or bigram says little about the label: telling classes apart
  needs the counts of a whole sequence (a bigram-count nearest-neighbour classifier is well above chance
  and well below perfect at the defaults).

Node order is a seeded random permutation, so ids (`n00000`, `n00001`, ...) carry no label.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqstruct.data.fasta import STANDARD_RESIDUES
from seqstruct.data.graph import Graph

ALPHABET = STANDARD_RESIDUES  # the 20 standard amino acids, one token each, in alphabetical order

# One random stream per ingredient, so that e.g. a larger graph leaves the grammar and signal matrices alone.
GRAPH_STREAM, GRAMMAR_STREAM, CLASSES_STREAM, LIFT_STREAM, SEQUENCES_STREAM, ORDER_STREAM, JITTER_STREAM = (
    range(7)
)
_STATIONARY_SQUARINGS = 8  # P^(2^8): far past the mixing time of a 20-letter chain with full support


def rng_for(seed: int, stream: int, *key: int) -> np.random.Generator:
    """The random stream `stream` of `seed` (and `key`, e.g. a class): independent of the others."""
    return np.random.default_rng([seed, stream, *key])


@dataclass
class SequenceConfig:
    """What every generator shares: the sequence model and the held-out split."""

    seed: int = 0  # seeds graph, labels, grammar, signal matrices, sequences, node order and split
    # alpha: std of the label-driven perturbation of each transition logit. At 0.6 a bigram-count 3-NN
    # classifier gets 0.44-0.48 of 20 topics (cliques) and 0.39-0.48 of 10 plane regions over seeds 0-2
    # (chance 0.05 and ~0.1): the label is in the sequences, but not readable from a few letters.
    signal: float = 0.6
    # std of the shared grammar's logits: at 1.5 the next letter's entropy is 2.1 nats (uniform: 3.0),
    # local structure masked-LM can learn that says nothing about any label
    background_scale: float = 1.5
    min_length: int = 48  # shortest sequence, residues
    max_length: int = 96  # longest; lengths are uniform in [min_length, max_length]
    signal_dim: int = 8  # dims of the per-class vectors / lifted position (per label block in topology)
    heldout_fraction: float = 0.1  # share of nodes held out; their edges go to graph_heldout.tsv


@dataclass
class SyntheticDataset:
    """One generated dataset: what `write_dataset` writes, plus arrays kept for checks and plots."""

    name: str  # generator name
    config: SequenceConfig  # the resolved generator config
    graph: Graph  # the full graph over ids n00000, ...
    sequences: list[str]  # [N], letters of ALPHABET
    labels: dict[str, list[str]]  # label column -> [N] class names
    signal: np.ndarray  # [N, r] normalised latent signal the sequences were drawn from
    details: dict[str, Any] = field(default_factory=dict)  # generator facts for dataset.json (radius, ...)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # per-node extras, not written (positions)


# ---------------------------------------------------------------------------------------------------
# Sequence model
# ---------------------------------------------------------------------------------------------------


def normalise_signal(signal: np.ndarray) -> np.ndarray:
    """[N, r] -> [N, r] centred over nodes and scaled to unit RMS norm (zeros stay zeros)."""
    centred = signal - signal.mean(axis=0)
    rms = math.sqrt(float((centred**2).sum(axis=1).mean()))
    return centred / rms if rms > 0 else centred


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _draw(cumulative: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws: cumulative [N, 20], uniforms [N] -> letter indices [N]."""
    return np.minimum((cumulative < uniforms[:, None]).sum(axis=1), len(ALPHABET) - 1)


def transition_matrices(
    signal: np.ndarray, strength: float, background_scale: float, seed: int
) -> np.ndarray:
    """Per-node Markov transition matrices [N, 20, 20] (rows sum to 1) for signal [N, r]."""
    rng = rng_for(seed, GRAMMAR_STREAM)
    size = len(ALPHABET)
    background = rng.normal(0.0, background_scale, (size, size))  # [20, 20]
    weights = rng.normal(size=(signal.shape[1], size, size))  # [r, 20, 20]
    logits = background + strength * np.einsum("nk,kab->nab", signal, weights)  # [N, 20, 20]
    return _softmax(logits)


def sample_sequences(
    signal: np.ndarray,
    *,
    strength: float,
    background_scale: float,
    min_length: int,
    max_length: int,
    seed: int,
) -> list[str]:
    """Draw one sequence per row of signal [N, r] from the Markov chain T(s) (module docstring)."""
    n = len(signal)
    probs = transition_matrices(signal, strength, background_scale, seed)  # [N, 20, 20]
    power = probs
    for _ in range(_STATIONARY_SQUARINGS):
        power = power @ power
    stationary = power.mean(axis=1)  # [N, 20]: every row of P^256 is the stationary distribution
    cumulative = np.cumsum(probs, axis=-1)  # [N, 20, 20]
    rng = rng_for(seed, SEQUENCES_STREAM)
    lengths = rng.integers(min_length, max_length + 1, size=n)  # [N]
    uniforms = rng.random((n, max_length))  # [N, L]
    tokens = np.empty((n, max_length), dtype=np.intp)
    tokens[:, 0] = _draw(np.cumsum(stationary, axis=-1), uniforms[:, 0])
    rows = np.arange(n)
    for t in range(1, max_length):  # vectorised over nodes, one position at a time
        tokens[:, t] = _draw(cumulative[rows, tokens[:, t - 1]], uniforms[:, t])
    letters = np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)[tokens]  # [N, L] bytes
    return [letters[i, : lengths[i]].tobytes().decode("ascii") for i in range(n)]


def class_vectors(names: list[str], dim: int, seed: int, label: str) -> dict[str, np.ndarray]:
    """A fixed random unit vector [dim] per class, drawn from (seed, label, name): a class keeps its
    vector whatever other classes the dataset has."""
    vectors = {}
    for name in names:
        key = zlib.crc32(f"{label}:{name}".encode())
        vector = rng_for(seed, CLASSES_STREAM, key).normal(size=dim)
        vectors[name] = vector / np.linalg.norm(vector)
    return vectors


def class_names(prefix: str, count: int) -> list[str]:
    width = len(str(count - 1))
    return [f"{prefix}{k:0{width}d}" for k in range(count)]


def node_ids(n: int) -> list[str]:
    """n00000, n00001, ...: zero-padded to the width of n - 1, at least 5 digits."""
    width = max(5, len(str(n - 1)))
    return [f"n{i:0{width}d}" for i in range(n)]


def check_common(name: str, config: SequenceConfig) -> None:
    checks = [
        (config.seed >= 0, f"seed must be >= 0, got {config.seed}"),
        (config.signal >= 0, f"signal must be >= 0, got {config.signal}"),
        (config.background_scale >= 0, f"background_scale must be >= 0, got {config.background_scale}"),
        (config.min_length >= 1, f"min_length must be >= 1, got {config.min_length}"),
        (
            config.max_length >= config.min_length,
            f"max_length={config.max_length} must be >= min_length={config.min_length}",
        ),
        (config.signal_dim >= 1, f"signal_dim must be >= 1, got {config.signal_dim}"),
        (
            0 < config.heldout_fraction < 1,
            f"heldout_fraction must be in (0, 1), got {config.heldout_fraction}",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(f"{name}: {message}")


def assemble(
    name: str,
    config: SequenceConfig,
    edges: np.ndarray,
    labels: dict[str, np.ndarray],
    signal: np.ndarray,
    details: dict[str, Any],
    arrays: dict[str, np.ndarray] | None = None,
) -> SyntheticDataset:
    """Shuffle the node order, draw the sequences and build the dataset. edges [E, 2] in generation
    order; labels column -> [N] names; signal [N, r] raw (normalised here)."""
    n = len(signal)
    order = rng_for(config.seed, ORDER_STREAM).permutation(n)  # new position p holds old node order[p]
    new_index = np.empty(n, dtype=np.int64)
    new_index[order] = np.arange(n)
    renamed = np.sort(new_index[edges], axis=1)  # [E, 2], a < b
    renamed = renamed[np.lexsort((renamed[:, 1], renamed[:, 0]))]
    signal = normalise_signal(signal[order])
    sequences = sample_sequences(
        signal,
        strength=config.signal,
        background_scale=config.background_scale,
        min_length=config.min_length,
        max_length=config.max_length,
        seed=config.seed,
    )
    graph = Graph(
        nodes=tuple(node_ids(n)),
        edges=renamed.astype(np.int64),
        weights=np.ones(len(renamed), dtype=np.float32),
    )
    return SyntheticDataset(
        name=name,
        config=config,
        graph=graph,
        sequences=sequences,
        labels={column: [str(v) for v in values[order]] for column, values in labels.items()},
        signal=signal,
        details=details,
        arrays={key: value[order] for key, value in (arrays or {}).items()},
    )
