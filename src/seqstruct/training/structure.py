"""Structure-inducing pretraining (McDermott et al.): (1 − λ)·MLM + λ·structure, the structure term a
metric-learning loss over a graph of the training sequences (seqstruct.objectives.structure).

The graph is read and checked here, cut to the training sequences, and the Trainer's `compute_loss` adds
the structure term on graph batches (seqstruct.data.structure.GraphContrastCollator).

Under DDP each rank collates its share of the global batch, anchors with their own extras. The structure
term is computed over every rank's rows together (gathered with gradient, as sentence-transformers'
`gather_across_devices` does): the in-batch losses then see the negatives and links of the whole global
batch, and the loss equals the one-process loss at the global batch size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_gather as all_gather_with_grad

from seqstruct.config import StructureConfig
from seqstruct.data.fasta import FastaRecord
from seqstruct.data.graph import Graph, GraphReport, read_edge_list
from seqstruct.data.labels import read_labels
from seqstruct.data.structure import GraphContrastCollator, pop_structure
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


def _gather_padded(tensor: torch.Tensor, sizes: list[int], grad: bool = False) -> list[torch.Tensor]:
    """Every rank's `tensor` ([sizes[r], ...] on rank r), in rank order. Collectives need one shape, so
    each is padded to the longest first. With `grad`, the gradient of each part flows back to its rank
    (summed over the ranks that used it, which every rank does with the same loss)."""
    longest = max(sizes)
    pad = tensor.new_zeros((longest - len(tensor), *tensor.shape[1:]))
    padded = torch.cat([tensor, pad]).contiguous()
    if grad:
        parts = list(all_gather_with_grad(padded))
    else:
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
    return [part[:n] for part, n in zip(parts, sizes, strict=True)]


def gather_rows(
    pooled: torch.Tensor, rows: dict[str, torch.Tensor], adjacency: Callable[[np.ndarray], torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Every rank's pooled rows [ΣR_r, D] (with gradient) and their structure entries, row indices shifted
    to the concatenation, the adjacency rebuilt over all rows' nodes by `adjacency`.

    One process at the global batch holds the same rows in another order (anchors of all ranks first);
    every structure loss is a mean over anchors, so the order changes nothing but float rounding.
    """
    device = pooled.device
    local = torch.tensor([len(pooled), len(rows["anchor"])], device=device)
    counts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, local)
    row_sizes, anchor_sizes = [int(c[0]) for c in counts], [int(c[1]) for c in counts]
    offsets = np.cumsum([0, *row_sizes[:-1]]).tolist()  # where each rank's rows start

    def shifted(key: str) -> torch.Tensor:
        parts = _gather_padded(rows[key], anchor_sizes)
        return torch.cat([part + offset for part, offset in zip(parts, offsets, strict=True)])

    nodes = torch.cat(_gather_padded(rows["nodes"], row_sizes))  # [ΣR]
    gathered = {
        "nodes": nodes,
        "anchor": shifted("anchor"),  # [ΣV]
        "positive": shifted("positive"),  # [ΣV]
        "negative": shifted("negative"),  # [ΣV, K]
        "adjacency": adjacency(nodes.cpu().numpy()).to(device),  # [ΣR, ΣR]
    }
    return torch.cat(_gather_padded(pooled, row_sizes, grad=True)), gathered


class StructureTrainer(MaskedLMTrainer):
    """The Trainer with the structure-inducing objective: (1 − λ)·MLM + λ·structure on batches from
    `GraphContrastCollator`; batches without `structure_*` entries (evaluation) get the plain MLM loss.

    The model stays the plain masked-LM model, so checkpoints, resume and `save_pretrained` are those of
    plain pretraining; the final hidden states come from a forward hook on the base model (the encoder
    body, whose `last_hidden_state` is what `encode()` pools at inference). The two terms' running means
    are logged beside the loss as `mlm_loss` and `structure_loss` (means over the ranks, like `loss`).

    Under DDP the structure loss is computed by every rank over all ranks' rows (`gather_rows`); it needs
    no scaling: the gather's backward sums the gradient of the (identical) loss over the ranks, and DDP's
    average over the ranks divides that sum back to one loss's gradient. The masked-LM term is made the
    global token mean by `MaskedLMTrainer.compute_loss`.
    """

    def __init__(self, *args: Any, objective: StructureObjective, pooling: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.data_collator, GraphContrastCollator):
            raise TypeError(
                "StructureTrainer needs a GraphContrastCollator: it rebuilds its adjacency under DDP"
            )
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
        if model.training and self.args.world_size > 1:
            pooled, rows = gather_rows(pooled, rows, self.data_collator.adjacency)
        structure_loss = self.objective.structure_loss(pooled, rows)
        if model.training:  # kept as tensors: a float() per step would make the GPU wait every step
            self._sums["mlm_loss"] = self._sums["mlm_loss"] + mlm_loss.detach()
            self._sums["structure_loss"] = self._sums["structure_loss"] + structure_loss.detach()
            self._count += 1
        loss = self.objective.combine(mlm_loss, structure_loss)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._count:
            sums = torch.stack(
                [
                    torch.as_tensor(total, dtype=torch.float32, device=self.args.device)
                    for total in self._sums.values()
                ]
            )
            if self.args.world_size > 1:  # every rank logs at the same step, as the Trainer's own loss gather
                sums = self.accelerator.reduce(sums, "mean")
            logs |= {key: float(total) / self._count for key, total in zip(self._sums, sums, strict=True)}
            self._sums = dict.fromkeys(self._sums, 0.0)
            self._count = 0
        super().log(logs, start_time)
