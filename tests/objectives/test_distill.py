"""The distillation objective on tiny random BERTs: zero for a perfect student, padding excluded."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import BertConfig, BertModel

from seqstruct.attention.interface import performerize
from seqstruct.objectives.distill import DistillationObjective, masked_mean_pool, masked_mse


def tiny_bert(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    config._attn_implementation = "sdpa"
    model = BertModel(config).eval()
    with torch.no_grad():  # at initialisation attention is near uniform and barely moves the output
        for layer in model.encoder.layer:
            layer.attention.self.query.weight.mul_(20.0)
            layer.attention.self.key.weight.mul_(20.0)
            layer.attention.self.value.weight.mul_(10.0)  # and attention that moves the residual stream
            layer.attention.output.dense.weight.mul_(10.0)
    return model


def batch_of(*lengths: int) -> dict[str, torch.Tensor]:
    """Token ids 5.. for each text, [CLS]=2 first, [SEP]=3 last, padded with 0."""
    longest = max(lengths)
    ids = torch.zeros(len(lengths), longest, dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.tensor([2, *[5 + (row * 7 + k) % 40 for k in range(n - 2)], 3])
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def test_masked_helpers_ignore_padding() -> None:
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    a, b = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    noisy = b.clone()
    noisy[~mask.bool()] += 1e3  # wild values at padded positions change nothing
    real = mask.bool()
    expected = (a[real] - b[real]).pow(2).mean()
    assert masked_mse(a, noisy, mask) == pytest.approx(expected.item(), rel=1e-6)
    torch.testing.assert_close(masked_mean_pool(noisy, mask)[1], b[1, 0])
    torch.testing.assert_close(masked_mean_pool(noisy, mask)[0], b[0, :2].mean(0))


def test_loss_is_zero_for_a_student_equal_to_the_teacher() -> None:
    teacher = tiny_bert()
    objective = DistillationObjective(copy.deepcopy(teacher), teacher)
    out = objective(**batch_of(7, 4, 9))
    assert out["loss"].item() == pytest.approx(0.0, abs=1e-6)
    assert out["embedding_cosine"].item() == pytest.approx(1.0, abs=1e-6)


def test_favor_student_has_a_positive_loss_and_only_the_student_learns() -> None:
    teacher = tiny_bert()
    student = performerize(copy.deepcopy(teacher), num_features=4)
    objective = DistillationObjective(student, teacher, hidden_weight=1.0, embedding_weight=2.0)
    out = objective(**batch_of(7, 4, 9))
    assert torch.isfinite(out["loss"]) and out["loss"].item() > 1e-4
    expected = out["hidden_mse"] + 2.0 * (1.0 - out["embedding_cosine"])
    assert out["loss"].item() == pytest.approx(expected.item(), abs=1e-6)
    out["loss"].backward()
    assert all(p.grad is not None for p in student.encoder.parameters())
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    # The teacher is no submodule: not trained, not saved, not switched to train mode.
    assert not any(name.startswith("teacher") for name in objective.state_dict())
    assert sum(p.numel() for p in objective.parameters()) == sum(p.numel() for p in student.parameters())
    objective.train()
    assert student.training and not teacher.training
    assert objective.config is student.config


def test_padding_is_excluded_from_the_loss() -> None:
    """A padded batch gives the same loss as its texts one by one, combined as the formula says:
    hidden term token-weighted over the batch, embedding term averaged over texts."""
    teacher = tiny_bert()
    objective = DistillationObjective(performerize(copy.deepcopy(teacher), num_features=8), teacher)
    lengths = (9, 4, 6)
    batched = objective(**batch_of(*lengths))
    alone = [
        objective(**{k: v[i : i + 1, :n] for k, v in batch_of(*lengths).items()})
        for i, n in enumerate(lengths)
    ]
    hidden = sum(n * out["hidden_mse"] for n, out in zip(lengths, alone, strict=True)) / sum(lengths)
    cosine = sum(out["embedding_cosine"] for out in alone) / len(lengths)
    assert batched["hidden_mse"].item() == pytest.approx(hidden.item(), rel=1e-4)
    assert batched["embedding_cosine"].item() == pytest.approx(cosine.item(), rel=1e-5)


def test_depth_mismatch_is_refused() -> None:
    shallow = BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4))
    with pytest.raises(ValueError, match="same depth"):
        DistillationObjective(shallow, tiny_bert())
