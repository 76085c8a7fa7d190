"""Distilling an exact-attention encoder into its FAVOR+ copy: a model whose forward returns the loss.

A performerized encoder keeps its weights but computes attention with random features, so its outputs
drift from the original's; the Performer paper recovers by fine-tuning briefly. With no labels at hand,
the original itself is the target: the student (the FAVOR+ copy) learns to reproduce the frozen teacher's
hidden states and sentence embeddings on unlabelled text.

Loss, for a batch of B texts padded to L tokens, m_bt = 1 on real tokens, h^l the output of layer l
(l = 1..N, the embedding output excluded: attention does not act on it) and D the hidden size:

    hidden    = 1/N Σ_l  Σ_{b,t} m_bt · ‖h^l_S(b,t) − h^l_T(b,t)‖² / (D · Σ_{b,t} m_bt)
    embedding = 1/B Σ_b (1 − cos(e_S(b), e_T(b))),       e(b) = Σ_t m_bt h^N(b,t) / Σ_t m_bt
    loss      = hidden_weight · hidden + embedding_weight · embedding

Choices. Padding is excluded everywhere (it is neither trained on nor scored by the teacher: pad positions
still get hidden states, and matching them would only teach the student noise). The hidden-state term is
a per-token mean, so long and short texts weigh by their tokens; matching every layer, not only the last,
keeps the student's intermediate representations, and with them its attention inputs, near the
teacher's, which is what makes recovery fast (TinyBERT, Jiao et al. 2020, and MiniLM's own recipe match
intermediate states too). The embedding term is the quantity the student is judged by: mean pooling is
all-MiniLM-L6-v2's sentence-transformers pooling, and cosine ignores the normalisation that follows it.

Inputs: what a BERT tokenizer returns (input_ids, attention_mask, optionally token_type_ids).
Example:
    teacher = AutoModel.from_pretrained(path).eval()
    student = performerize(AutoModel.from_pretrained(path), num_features=256)
    objective = DistillationObjective(student, teacher)
    loss = objective(**tokenizer(texts, padding=True, return_tensors="pt"))["loss"]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel


def masked_mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean over real tokens: hidden [B, L, D], mask [B, L] -> [B, D]."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # [B, L, 1]
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def masked_mse(student: Tensor, teacher: Tensor, mask: Tensor) -> Tensor:
    """Mean squared difference per hidden unit over real tokens: [B, L, D] x2, [B, L] -> scalar."""
    weights = mask.to(student.dtype).unsqueeze(-1)  # [B, L, 1]
    squared = (student - teacher).pow(2) * weights
    return squared.sum() / (weights.sum().clamp(min=1.0) * student.shape[-1])


class DistillationObjective(nn.Module):
    """Holds the trainable FAVOR+ student and the frozen exact teacher; forward returns the loss.

    The teacher is kept outside the module tree on purpose: it is not trained (no parameters reach the
    optimiser), not checkpointed (the Trainer saves only the student, as `student.*`), not wrapped by
    DDP, and `train()` cannot switch it out of eval mode. `forward` moves it to the student's device the
    first time they differ. `config` is the student's, so FAVOR+ redraw callbacks find their settings.
    """

    main_input_name = "input_ids"

    def __init__(
        self,
        student: PreTrainedModel,
        teacher: PreTrainedModel,
        hidden_weight: float = 1.0,
        embedding_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if student.config.num_hidden_layers != teacher.config.num_hidden_layers:
            raise ValueError(
                f"student has {student.config.num_hidden_layers} layers, teacher "
                f"{teacher.config.num_hidden_layers}: layer-wise distillation needs the same depth"
            )
        if student.config.hidden_size != teacher.config.hidden_size:
            raise ValueError("student and teacher hidden sizes differ")
        self.student = student
        teacher.eval()
        teacher.requires_grad_(False)
        object.__setattr__(self, "_teacher", teacher)  # not a submodule: see the class docstring
        self.hidden_weight = hidden_weight
        self.embedding_weight = embedding_weight

    @property
    def teacher(self) -> PreTrainedModel:
        return self._teacher

    @property
    def config(self) -> Any:
        return self.student.config

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        token_type_ids: Tensor | None = None,
        return_loss: bool = True,  # tells the HF Trainer that evaluation yields a loss without labels
    ) -> dict[str, Tensor]:
        """-> {"loss", "hidden_mse", "embedding_cosine" (mean over the batch, detached)}."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        device = input_ids.device
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        with torch.no_grad():
            target = self.teacher(**inputs, output_hidden_states=True).hidden_states
        output = self.student(**inputs, output_hidden_states=True).hidden_states
        mask = attention_mask.bool()

        # hidden_states[0] is the embedding output; layers are 1..N.
        hidden = torch.stack([masked_mse(s, t, mask) for s, t in zip(output[1:], target[1:], strict=True)])
        hidden = hidden.mean()
        cosine = nn.functional.cosine_similarity(
            masked_mean_pool(output[-1], mask).float(), masked_mean_pool(target[-1], mask).float(), dim=-1
        )  # [B]
        loss = self.hidden_weight * hidden + self.embedding_weight * (1.0 - cosine).mean()
        return {"loss": loss, "hidden_mse": hidden.detach(), "embedding_cosine": cosine.mean().detach()}
