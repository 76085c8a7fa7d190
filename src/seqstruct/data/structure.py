"""Batches for structure-inducing pretraining: masked-LM anchors plus their graph positives and negatives.

A batch holds the B anchors the Trainer's sampler chose (the masked-LM examples, exactly as plain
pretraining would see them) followed by extra rows: for every anchor with a neighbour, one positive drawn
from its neighbours in proportion to the edge weights (seqstruct.data.graph.sample_contrast) and
`num_negatives` non-neighbours. All rows are cropped and masked alike (masking doubles as augmentation for
the contrastive pairs), but only anchors carry MLM labels, so the MLM term averages over the same
distribution of proteins as plain pretraining and λ weighs two comparable things.

Row layout (R = B + V·(1 + K) for V anchors with a positive and K negatives each):

    rows [0, B)                 anchors, in the sampler's order
    rows [B, B + V)             the positive of each valid anchor
    rows [B + V, R)             their negatives, K per valid anchor, anchor-major

Keys added to the masked-LM batch (all prefixed `structure_`, which the Trainer removes before the
model's forward): `nodes` [R] each row's node index; `anchor` [V], `positive` [V], `negative` [V, K] row indices; `adjacency` [R, R] bool,
the graph (symmetrised) restricted to the rows plus repeated nodes, for the in-batch losses; `pool_mask`
[R, L] bool, residue tokens for mean pooling. Each anchor's extras are drawn from (seed, epoch, the
anchor), and every row is cropped and masked from (seed, epoch, its anchor's id, its role), so a resumed
run draws the same extras, and `torchrun` ranks at batch b draw, between them, exactly the rows of one
process at batch N·b.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import sparse

from seqstruct.data.collate import IGNORE_INDEX, MaskedLMCollator
from seqstruct.data.graph import Graph, sample_contrast

STRUCTURE_PREFIX = "structure_"


def symmetric_adjacency(graph: Graph) -> sparse.csr_matrix:
    """[N, N] boolean adjacency with both directions of every edge."""
    n = len(graph.nodes)
    rows = np.concatenate([graph.edges[:, 0], graph.edges[:, 1]])
    cols = np.concatenate([graph.edges[:, 1], graph.edges[:, 0]])
    return sparse.csr_matrix((np.ones(len(rows), dtype=bool), (rows, cols)), shape=(n, n))


@dataclass
class GraphContrastCollator:
    """Collate anchor examples (`{"id", "sequence"}`) into a masked-LM batch with graph contrast rows.

    `graph` is over the training sequences, in the order of `sequences`; pre-masked held-out examples
    (those with `labels`) pass to the masked-LM collator untouched.
    """

    mlm: MaskedLMCollator
    graph: Graph
    sequences: Sequence[str]  # node index -> sequence
    num_negatives: int = 1
    groups: np.ndarray | None = None  # [N] group label per node; negatives come from the anchor's group
    _index: dict[str, int] = field(init=False, repr=False)
    _lists: tuple[list[np.ndarray], list[np.ndarray]] = field(init=False, repr=False)
    _adjacency: sparse.csr_matrix = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.sequences) != len(self.graph.nodes):
            raise ValueError(f"{len(self.sequences)} sequences for {len(self.graph.nodes)} graph nodes")
        self._index = {node: i for i, node in enumerate(self.graph.nodes)}
        self._lists = self.graph.adjacency_lists()  # neighbours and edge weights, once
        self._adjacency = symmetric_adjacency(self.graph)

    @property
    def epoch(self) -> int:
        return self.mlm.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.mlm.epoch = value

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if "labels" in examples[0]:
            return self.mlm(examples)
        missing = [ex["id"] for ex in examples if ex["id"] not in self._index]
        if missing:
            raise KeyError(f"training sequences {missing[:5]} are not nodes of the structure graph")
        anchors = np.array([self._index[ex["id"]] for ex in examples], dtype=np.int64)  # [B]
        positives, negatives = sample_contrast(
            self.graph,
            anchors,
            num_negatives=self.num_negatives,
            seed=self.mlm.derived_seed("graph"),  # per anchor inside: a batch split draws the same extras
            groups=self.groups,
            lists=self._lists,
        )
        valid = np.flatnonzero(positives >= 0)  # [V] anchor rows that have a neighbour
        extra = np.concatenate([positives[valid], negatives[valid].ravel()])  # [V + V*K]
        nodes = np.concatenate([anchors, extra])  # [R]
        rows = list(examples) + [
            {"id": self.graph.nodes[i], "sequence": self.sequences[i]} for i in extra.tolist()
        ]
        # Each extra row is cropped and masked by its anchor and role, not by its place in the batch.
        owners = [examples[i] for i in valid.tolist()]
        generators = [self.mlm.example_generator(ex) for ex in examples]
        generators += [self.mlm.example_generator(ex, "positive") for ex in owners]
        generators += [
            self.mlm.example_generator(ex, f"negative{k}") for ex in owners for k in range(self.num_negatives)
        ]
        batch = self.mlm.crop_and_mask(rows, generators)
        batch["labels"][len(examples) :] = IGNORE_INDEX
        special = batch.pop("special_tokens_mask")
        b, v, k = len(examples), len(valid), self.num_negatives
        batch[STRUCTURE_PREFIX + "nodes"] = torch.from_numpy(nodes)
        batch[STRUCTURE_PREFIX + "anchor"] = torch.from_numpy(valid)
        batch[STRUCTURE_PREFIX + "positive"] = torch.arange(b, b + v)
        batch[STRUCTURE_PREFIX + "negative"] = torch.arange(b + v, b + v + v * k).reshape(v, k)
        batch[STRUCTURE_PREFIX + "adjacency"] = self.adjacency(nodes)
        batch[STRUCTURE_PREFIX + "pool_mask"] = batch["attention_mask"].bool() & ~special
        return batch

    def adjacency(self, nodes: np.ndarray) -> torch.Tensor:
        """[R, R] bool: which of the rows' nodes ([R] node indices) the graph links (symmetrised), a node
        drawn twice counting as its own positive; the diagonal is False. Also what the Trainer rebuilds
        for the rows of every rank together under DDP."""
        node_tensor = torch.from_numpy(nodes)
        same = node_tensor[:, None] == node_tensor[None, :]  # [R, R] a node drawn twice is its own positive
        linked = torch.from_numpy(self._adjacency[nodes][:, nodes].toarray())
        return (linked | same) & ~torch.eye(len(nodes), dtype=torch.bool)


def pop_structure(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Remove and return the `structure_*` entries (without the prefix) of a collated batch."""
    keys = [key for key in batch if key.startswith(STRUCTURE_PREFIX)]
    return {key.removeprefix(STRUCTURE_PREFIX): batch.pop(key) for key in keys}
