"""Structure-inducing pretraining (McDermott et al.): (1 − λ)·MLM + λ·structure, the structure term a
metric-learning loss over a graph of the training sequences (seqstruct.objectives.structure).

The graph is read and checked here, cut to the training sequences, and the Trainer's `compute_loss` adds
the structure term on graph batches (seqstruct.data.structure.GraphContrastCollator).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from seqstruct.config import StructureConfig
from seqstruct.data.fasta import FastaRecord
from seqstruct.data.graph import Graph, GraphReport, read_edge_list
from seqstruct.data.labels import read_labels
from seqstruct.data.structure import pop_structure
from seqstruct.models.pooling import TOKEN_POOLINGS, get_pooling
from seqstruct.objectives.structure import StructureObjective
from seqstruct.training.token_budget import MaskedLMTrainer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StructureData:
    """The graph over the training sequences and what the graph collator needs besides it."""

    graph: Graph  # over the training sequences, in training-set order
    sequences: list[str]  # node index -> sequence
    groups: np.ndarray | None  # [N] group per node, or None
    report: GraphReport  # what reading the full edge list found


def structure_objective(settings: StructureConfig) -> StructureObjective:
    return StructureObjective(settings.loss, settings.weight, settings.margin, settings.temperature)


def check_structure(settings: StructureConfig) -> None:
    """Refuse settings that cannot train, before any data is read."""
    structure_objective(settings)  # loss name and weight range
    if settings.pooling not in TOKEN_POOLINGS:  # the objective pools the last hidden state only
        raise ValueError(
            f"structure.pooling must be one of {sorted(TOKEN_POOLINGS)}; got {settings.pooling!r}"
        )
    if settings.weight > 0 and not settings.graph:
        raise ValueError("structure.weight > 0 needs structure.graph: the edge list over the FASTA ids")
    if settings.negatives < 0:
        raise ValueError(f"structure.negatives must be >= 0; got {settings.negatives}")
    if settings.margin <= 0 or settings.temperature <= 0:
        raise ValueError("structure.margin and structure.temperature must be positive")
    if settings.group_column and not settings.groups:
        raise ValueError("structure.group_column is set but structure.groups (the TSV) is not")


def load_structure(
    settings: StructureConfig, records: list[FastaRecord], train_ids: list[str]
) -> StructureData:
    """Read and check the edge list over every record, then keep the graph among training sequences: a
    held-out protein is neither a positive nor a negative, so masked-LM evaluation never sees it in training."""
    graph, report = read_edge_list(settings.graph, [r.id for r in records], directed=settings.directed)
    position = {node: i for i, node in enumerate(graph.nodes)}
    keep = np.array([position[i] for i in train_ids], dtype=np.int64)
    train_graph = graph.subgraph(keep)
    sequences = {r.id: r.sequence for r in records}
    groups = None
    if settings.groups:
        table = read_labels(settings.groups, graph.nodes)
        column = settings.group_column or next(iter(table))
        if column not in table:
            raise ValueError(f"{settings.groups}: no column {column!r}; it has {sorted(table)}")
        groups = table[column][keep]
    kept = int(len(train_graph.edges))
    logger.info(
        "structure graph: %d of %d edges lie among the %d training sequences", kept, report.edges, len(keep)
    )
    if kept == 0:
        raise ValueError(f"{settings.graph}: no edge joins two training sequences")
    return StructureData(train_graph, [sequences[i] for i in train_graph.nodes], groups, report)


class StructureTrainer(MaskedLMTrainer):
    """The Trainer with the structure-inducing objective: (1 − λ)·MLM + λ·structure on batches from
    `GraphContrastCollator`; batches without `structure_*` entries (evaluation) get the plain MLM loss.

    The model stays the plain masked-LM model, so checkpoints, resume and `save_pretrained` are those of
    plain pretraining; the final hidden states come from a forward hook on the base model (the encoder
    body, whose `last_hidden_state` is what `encode()` pools at inference). The two terms' running means
    are logged beside the loss as `mlm_loss` and `structure_loss`.
    """

    def __init__(self, *args: Any, objective: StructureObjective, pooling: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.pool = get_pooling(pooling)
        self._sums: dict[str, torch.Tensor | float] = {"mlm_loss": 0.0, "structure_loss": 0.0}
        self._count = 0

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        rows = pop_structure(inputs)
        if not rows:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        captured: list[torch.Tensor] = []
        body = self.accelerator.unwrap_model(model).base_model
        hook = body.register_forward_hook(lambda module, args, output: captured.append(output[0]))
        try:
            mlm_loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        finally:
            hook.remove()
        pooled = self.pool(captured[0], rows["pool_mask"])  # [R, D]
        structure_loss = self.objective.structure_loss(pooled, rows)
        if model.training:  # kept as tensors: a float() per step would make the GPU wait every step
            self._sums["mlm_loss"] = self._sums["mlm_loss"] + mlm_loss.detach()
            self._sums["structure_loss"] = self._sums["structure_loss"] + structure_loss.detach()
            self._count += 1
        loss = self.objective.combine(mlm_loss, structure_loss)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._count:
            logs |= {key: float(total) / self._count for key, total in self._sums.items()}
            self._sums = dict.fromkeys(self._sums, 0.0)
            self._count = 0
        super().log(logs, start_time)
