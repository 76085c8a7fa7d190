"""Structure-inducing pretraining (McDermott et al.): (1 − λ)·MLM + λ·structure, the structure term a
metric-learning loss over a graph of the training sequences (seqstruct.objectives.structure).

The graph is read and checked here, cut to the training sequences, and the Trainer's `compute_loss` adds
the structure term on graph batches (seqstruct.data.structure.GraphContrastCollator). Beside the two
losses it logs the structure loss's chance value (`structure_chance`, what an embedding that ignores the
graph scores on the same batches) and λ as it ramps up (`structure_weight`); the edges the cut removed, those
of held-out sequences, are what `HeldoutLinks` retrieves at every evaluation (`eval_link_mrr`), and
`chance_summary` says at the end whether the structure loss left its chance value at all.

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
from torch import nn
from torch.distributed.nn.functional import all_gather as all_gather_with_grad
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from seqstruct.config import StructureConfig
from seqstruct.data.fasta import FastaRecord
from seqstruct.data.graph import Graph, GraphReport, read_edge_list
from seqstruct.data.labels import read_labels
from seqstruct.data.structure import GraphContrastCollator, pop_structure
from seqstruct.models.embed import encode
from seqstruct.models.pooling import TOKEN_POOLINGS, get_pooling
from seqstruct.objectives.structure import StructureObjective, link_mrr
from seqstruct.training.token_budget import MaskedLMTrainer

logger = logging.getLogger(__name__)


# A run has left chance when its last logged structure loss is below this share of its chance value. An
# untrained encoder (learning rate 1e-9) sits at 0.97 of chance on the tests' two-clique graph, its windows
# within 1% of one another (sequence composition alone sets the cliques a little apart); runs that learn
# the graph reach 0.77-0.87 within 150 steps on cliques (docs/results.md, issue 21). The bar is low on
# purpose: it tells "learned something of the graph" from "learned nothing", not a good embedding from a
# poor one.
LEFT_CHANCE = 0.9


@dataclass(frozen=True)
class HeldoutLinks:
    """Held-out link retrieval during training: the run's held-out sequences that have graph edges (edges
    training never sees: `load_structure` cuts them) query the candidates, ranked by the cosine of their
    pooled embeddings; relevant are their graph neighbours (`seqstruct.objectives.structure.link_mrr`).

    The candidates are every graph node, or, beyond `structure.link_candidates`, the queries, their
    neighbours and a seeded sample of the rest: a smaller pool ranks higher, so the figure is comparable
    between runs with one setting, and with the `link` task's only when every node is a candidate.
    """

    sequences: list[str]  # the candidates [C], queries among them
    queries: np.ndarray  # [Q] positions in `sequences`
    relevant: list[np.ndarray]  # per query, the positions of its neighbours

    def mrr(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pooling: str, max_length: int
    ) -> float | None:
        """The MRR of `model`'s encoder body (a masked-LM model's `base_model`, what `encode` pools at
        inference), pooled by `pooling` over residues as the structure loss pools them."""
        training = model.training
        embed_logger = logging.getLogger(encode.__module__)
        level = embed_logger.level
        embed_logger.setLevel(logging.ERROR)  # cropped to max_length as in training: no warning each time
        try:
            vectors = encode(
                model.base_model, tokenizer, self.sequences, pooling=pooling, max_length=max_length
            )
        finally:
            embed_logger.setLevel(level)
            model.train(training)  # encode leaves the body in eval mode
        return link_mrr(vectors, self.queries, self.relevant)


def heldout_links(
    graph: Graph, train: np.ndarray, sequences: list[str], max_queries: int, max_candidates: int, seed: int
) -> HeldoutLinks | None:
    """The held-out link queries of a graph over every record (`train` [N] bool: the training records;
    `sequences` [N]): up to `max_queries` held-out nodes with a neighbour, a seeded sample; None when
    there are none (or `max_queries` is 0)."""
    neighbours = graph.neighbours()
    eligible = np.flatnonzero(~train & (np.array([len(n) for n in neighbours]) > 0))  # [E]
    if not len(eligible) or max_queries == 0:
        return None
    rng = np.random.default_rng(seed)
    if len(eligible) > max_queries:
        eligible = np.sort(rng.choice(eligible, max_queries, replace=False))
    n = len(graph.nodes)
    if n <= max_candidates:
        pool = np.arange(n)
    else:
        needed = np.union1d(eligible, np.concatenate([neighbours[q] for q in eligible]))
        rest = np.setdiff1d(np.arange(n), needed)
        extra = rng.choice(rest, min(len(rest), max(0, max_candidates - len(needed))), replace=False)
        pool = np.union1d(needed, extra)
    position = np.full(n, -1, dtype=np.int64)
    position[pool] = np.arange(len(pool))
    return HeldoutLinks(
        [sequences[i] for i in pool], position[eligible], [position[neighbours[q]] for q in eligible]
    )


@dataclass(frozen=True)
class StructureData:
    """The graph over the training sequences and what the graph collator needs besides it."""

    graph: Graph  # over the training sequences, in training-set order
    sequences: list[str]  # node index -> sequence
    groups: np.ndarray | None  # [N] group per node, or None
    report: GraphReport  # what reading the full edge list found
    links: HeldoutLinks | None = None  # held-out link retrieval, when held-out sequences have edges


def structure_objective(settings: StructureConfig, warmup_steps: int = 0) -> StructureObjective:
    """The objective of `settings`; `warmup_steps` (the schedule's) is λ's ramp unless the settings name one."""
    ramp = warmup_steps if settings.weight_warmup_steps is None else settings.weight_warmup_steps
    return StructureObjective(settings.loss, settings.weight, settings.margin, settings.temperature, ramp)


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
    if settings.loss == "margin_cosine" and settings.margin > 2:
        raise ValueError(
            f"structure.margin {settings.margin} is a cosine distance for loss=margin_cosine, at most 2 "
            "(opposite directions); margin_euclidean takes Euclidean ones"
        )
    if settings.group_column and not settings.groups:
        raise ValueError("structure.group_column is set but structure.groups (the TSV) is not")


def load_structure(
    settings: StructureConfig, records: list[FastaRecord], train_ids: list[str], seed: int = 0
) -> StructureData:
    """Read and check the edge list over every record, then keep the graph among training sequences: a
    held-out sequence is neither a positive nor a negative, so masked-LM evaluation never sees it in
    training; its edges are the held-out links (`HeldoutLinks`, `seed` drawing the query sample)."""
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
    train = np.zeros(len(graph.nodes), dtype=bool)
    train[keep] = True
    links = heldout_links(
        graph,
        train,
        [r.sequence for r in records],
        settings.link_queries,
        settings.link_candidates,
        seed,
    )
    if links is None:
        logger.info("no held-out sequence has a graph edge: eval_link_mrr is not computed")
    else:
        logger.info(
            "held-out links: %d held-out sequences query %d candidates (each cut to data.max_length tokens)",
            len(links.queries),
            len(links.sequences),
        )
    return StructureData(train_graph, [sequences[i] for i in train_graph.nodes], groups, report, links)


def chance_summary(log_history: list[dict[str, float]]) -> dict[str, Any]:
    """Whether the structure loss left its chance value: the last logged window's loss and chance, their
    ratio, `left_chance` (that ratio below LEFT_CHANCE) and the least ratio of any window (a run that
    left chance and fell back differs from one that never left it); None values when no window logged a
    structure loss (structure.weight 0, or fewer steps than train.logging_steps)."""
    rows = [row for row in log_history if "structure_loss" in row and row.get("structure_chance")]
    if not rows:  # (a chance of 0: no batch held an edge, nothing to learn)
        return {
            **dict.fromkeys(("final_loss", "chance", "loss_to_chance", "left_chance")),
            **dict.fromkeys(("best_loss_to_chance", "best_step")),
            "left_chance_threshold": LEFT_CHANCE,
        }
    ratios = [row["structure_loss"] / row["structure_chance"] for row in rows]
    best = int(np.argmin(ratios))
    return {
        "final_loss": rows[-1]["structure_loss"],
        "chance": rows[-1]["structure_chance"],
        "loss_to_chance": ratios[-1],
        "left_chance": ratios[-1] < LEFT_CHANCE,
        "best_loss_to_chance": ratios[best],
        "best_step": int(rows[best]["step"]),
        "left_chance_threshold": LEFT_CHANCE,
    }


def projection_head(width: int, dim: int) -> nn.Module:
    """The optional projection the structure loss reads instead of the pooled vector (SimCLR's head:
    Linear-ReLU-Linear), [R, width] -> [R, dim]: the loss shapes the head's output, and the encoder keeps
    room for what the masked-LM needs. Trained with the model, dropped before the model is saved."""
    return nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, dim))


PROJECTION = "structure_projection"  # the head's name on the masked-LM model while training


def drop_projection(model: nn.Module) -> None:
    """Remove the projection head, so the saved model is the plain masked-LM model."""
    if hasattr(model, PROJECTION):
        delattr(model, PROJECTION)


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
    """The Trainer with the structure-inducing objective: (1 − λ_t)·MLM + λ_t·structure on batches from
    `GraphContrastCollator`; batches without `structure_*` entries (evaluation) get the plain MLM loss.

    The model stays the plain masked-LM model, so checkpoints, resume and `save_pretrained` are those of
    plain pretraining; the final hidden states come from a forward hook on the base model (the encoder
    body, whose `last_hidden_state` is what `encode()` pools at inference). With `projection_dim`, a
    projection head (`projection_head`) is attached to the model as `structure_projection`, so that the
    optimiser, DDP and checkpoints carry it; `drop_projection` removes it before the final save.
    The window means of the two terms, the structure loss's chance value and λ_t are logged beside the
    loss as `mlm_loss`, `structure_loss`, `structure_chance`, `structure_weight` (means over the ranks,
    like `loss`).

    Under DDP the structure loss is computed by every rank over all ranks' rows (`gather_rows`); it needs
    no scaling: the gather's backward sums the gradient of the (identical) loss over the ranks, and DDP's
    average over the ranks divides that sum back to one loss's gradient. The masked-LM term is made the
    global token mean by `MaskedLMTrainer.compute_loss`.
    """

    def __init__(
        self,
        *args: Any,
        objective: StructureObjective,
        pooling: str,
        projection_dim: int = 0,
        **kwargs: Any,
    ) -> None:
        if projection_dim > 0:  # before the Trainer places the model on its device
            model = kwargs["model"]
            model.add_module(PROJECTION, projection_head(model.config.hidden_size, projection_dim))
        super().__init__(*args, **kwargs)
        if not isinstance(self.data_collator, GraphContrastCollator):
            raise TypeError(
                "StructureTrainer needs a GraphContrastCollator: it rebuilds its adjacency under DDP"
            )
        self.objective = objective
        self.pool = get_pooling(pooling)
        self._sums: dict[str, torch.Tensor | float] = dict.fromkeys(
            ("mlm_loss", "structure_loss", "structure_chance", "structure_weight"), 0.0
        )
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
        unwrapped = self.accelerator.unwrap_model(model)
        hook = unwrapped.base_model.register_forward_hook(
            lambda module, args, output: captured.append(output[0])
        )
        try:
            mlm_loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        finally:
            hook.remove()
        pooled = self.pool(captured[0], rows["pool_mask"])  # [R, D]
        if hasattr(unwrapped, PROJECTION):
            pooled = getattr(unwrapped, PROJECTION)(pooled)  # [R, P], each rank its own rows
        if model.training and self.args.world_size > 1:
            pooled, rows = gather_rows(pooled, rows, self.data_collator.adjacency)
        structure_loss = self.objective.structure_loss(pooled, rows)
        weight = self.objective.weight_at(self.state.global_step)
        if model.training:  # kept as tensors: a float() per step would make the GPU wait every step
            terms = {
                "mlm_loss": mlm_loss.detach(),
                "structure_loss": structure_loss.detach(),
                "structure_chance": self.objective.chance(pooled, rows),
                "structure_weight": weight,
            }
            self._sums = {key: self._sums[key] + value for key, value in terms.items()}
            self._count += 1
        loss = self.objective.combine(mlm_loss, structure_loss, self.state.global_step)
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
