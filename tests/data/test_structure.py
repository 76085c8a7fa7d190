"""The graph contrast collator: anchors as in plain MLM, positives linked, negatives not, seeded."""

from __future__ import annotations

import numpy as np
import torch

from seqstruct.data.collate import IGNORE_INDEX, MaskedLMCollator
from seqstruct.data.graph import Graph
from seqstruct.data.structure import GraphContrastCollator, pop_structure
from seqstruct.data.tokenizers import build_protein_tokenizer

SEQUENCES = [
    "ACDEFGHIKL",
    "MNPQRSTVWY",
    "ACDACDACD",
    "WYWYWYWYWY",
    "KLKLKLKL",
    "PQPQPQ",
    "GGGHHH",
    "EEEEEEEE",
]
IDS = [f"p{i}" for i in range(len(SEQUENCES))]


def _graph() -> Graph:
    # two paths 0-1-2-3 and 4-5, nodes 6 and 7 isolated
    edges = np.array([[0, 1], [1, 2], [2, 3], [4, 5]], dtype=np.int64)
    return Graph(tuple(IDS), edges, np.ones(len(edges), dtype=np.float32))


def _collator(negatives: int = 2, seed: int = 0) -> GraphContrastCollator:
    mlm = MaskedLMCollator(build_protein_tokenizer(), max_length=16, seed=seed)
    return GraphContrastCollator(mlm, _graph(), SEQUENCES, num_negatives=negatives)


def _examples(indices: list[int]) -> list[dict[str, str]]:
    return [{"id": IDS[i], "sequence": SEQUENCES[i]} for i in indices]


def test_rows_are_anchors_then_linked_positives_then_unlinked_negatives() -> None:
    collator = _collator(negatives=2)
    batch = collator(_examples([0, 4, 6]))
    rows = pop_structure(batch)
    assert rows["anchor"].tolist() == [0, 1]  # node 6 has no neighbour: no contrast rows for it
    assert rows["positive"].tolist() == [3, 4]
    assert rows["negative"].tolist() == [[5, 6], [7, 8]]
    adjacency = rows["adjacency"]
    assert adjacency.shape == (9, 9) and adjacency.equal(adjacency.T)
    assert not adjacency.diagonal().any()
    for anchor, positive, negatives in zip(rows["anchor"], rows["positive"], rows["negative"], strict=False):
        assert adjacency[anchor, positive]
        assert not adjacency[anchor, negatives].any()
    # only anchors carry masked-LM labels
    assert (batch["labels"][3:] == IGNORE_INDEX).all()
    assert rows["pool_mask"].sum(1)[:3].tolist() == [len(SEQUENCES[i]) for i in (0, 4, 6)]


def test_anchor_rows_match_plain_masked_lm_crops() -> None:
    collator = _collator(negatives=1)
    examples = _examples([1, 2])
    plain = collator.mlm(examples)
    graph_batch = collator(examples)
    pop_structure(graph_batch)
    length = plain["input_ids"].shape[1]
    # Same crops, hence the same tokens where nothing is masked in either batch.
    for row in range(2):
        unmasked = (plain["labels"][row] == IGNORE_INDEX) & (
            graph_batch["labels"][row, :length] == IGNORE_INDEX
        )
        assert plain["input_ids"][row][unmasked].equal(graph_batch["input_ids"][row, :length][unmasked])


def _rows_by_role(batch: dict[str, torch.Tensor], anchor_ids: list[str]) -> dict[tuple[str, str], tuple]:
    """Each row keyed by (its anchor's id, role): (node, unpadded input ids, labels)."""
    rows = pop_structure(batch)
    valid = [anchor_ids[i] for i in rows["anchor"].tolist()]
    keys = [(a, "anchor") for a in anchor_ids] + [(a, "positive") for a in valid]
    keys += [(a, f"negative{k}") for a in valid for k in range(rows["negative"].shape[1])]
    tokens = batch["attention_mask"].bool()
    return {
        key: (
            int(rows["nodes"][r]),
            batch["input_ids"][r][tokens[r]].tolist(),
            batch["labels"][r][tokens[r]].tolist(),
        )
        for r, key in enumerate(keys)
    }


def test_a_batch_split_in_two_draws_and_masks_the_same_rows() -> None:
    """What two DDP ranks collate from the halves of a batch is, row for row, what one process collates
    from the whole batch: the same extras, crops and masks."""
    collator = _collator(negatives=2, seed=7)
    whole = _rows_by_role(collator(_examples([0, 1, 2, 3, 4, 5])), IDS[:6])
    halves = _rows_by_role(collator(_examples([0, 1, 2])), IDS[:3])
    halves |= _rows_by_role(collator(_examples([3, 4, 5])), IDS[3:6])
    assert halves == whole


def test_sampling_is_seeded_by_batch_and_epoch() -> None:
    collator = _collator(negatives=3)
    first = pop_structure(collator(_examples([0, 1, 2, 3, 4])))
    again = pop_structure(collator(_examples([0, 1, 2, 3, 4])))
    assert all(first[k].equal(again[k]) for k in first)
    nodes_first = collator(_examples([0, 1, 2, 3, 4]))["input_ids"]
    collator.epoch = 1
    nodes_next = collator(_examples([0, 1, 2, 3, 4]))["input_ids"]
    assert not torch.equal(nodes_first, nodes_next)


def test_heldout_examples_pass_through() -> None:
    collator = _collator()
    batch = collator([{"id": "p0", "input_ids": [0, 5, 6, 2], "labels": [-100, 5, -100, -100]}])
    assert set(batch) == {"input_ids", "attention_mask", "labels"}


def test_negatives_come_from_the_anchors_group() -> None:
    groups = np.array(["a", "a", "b", "b", "a", "a", "b", "a"])
    mlm = MaskedLMCollator(build_protein_tokenizer(), max_length=16)
    collator = GraphContrastCollator(mlm, _graph(), SEQUENCES, num_negatives=2, groups=groups)
    seen = set()
    for seed in range(10):
        collator.mlm.seed = seed
        rows = pop_structure(collator(_examples([0, 1, 4])))
        nodes = rows["nodes"]
        assert nodes[:3].tolist() == [0, 1, 4]
        for anchor, negatives in zip(rows["anchor"].tolist(), rows["negative"].tolist(), strict=True):
            negative_nodes = nodes[negatives].tolist()
            assert all(groups[n] == groups[nodes[anchor]] for n in negative_nodes)
            seen.update(negative_nodes)
    assert not seen & {2, 3, 6}  # group b never supplies a negative to these group-a anchors
