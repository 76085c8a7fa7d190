"""BiLSTM baseline for sequence classification and regression, as a transformers model.

The model: token embedding -> bidirectional LSTM (`num_layers`, `hidden_size` per direction) -> pooling
over the valid positions (`max`, `mean`, or `last`: the final forward and backward states concatenated)
-> dropout, Linear(2H -> H), tanh, dropout, Linear(H -> num_labels). It is the "no pretraining" arm of a
learning curve, after Wang, Khabsa and Ma, "To Pretrain or Not to Pretrain: Examining the Benefits of
Pretraining on Resource Rich Tasks" (ACL 2020), who compare fine-tuned encoders with BiLSTMs trained from
scratch and with BiLSTMs whose embeddings start from the encoder's (`init_embeddings_from`).

It reads the encoder's own tokenizer (`lstm_config_for(tokenizer, ...)`), not a word vocabulary of its
own: every arm of a learning curve then sees the same token sequences, so a gap between arms measures
pretraining, not tokenisation, and the third arm can copy the encoder's embedding matrix row for row.

Being a `PreTrainedModel`, it trains with the HF Trainer, saves as config.json + model.safetensors, and
reloads with `AutoModelForSequenceClassification.from_pretrained(dir)` once seqstruct is imported
(`register()`, run through seqstruct.registration; no trust_remote_code).

Padding never changes an output: the LSTM runs on a packed batch (lengths from attention_mask, which
must be right-padded), and max/mean pooling see valid positions only, so a sequence scores the same
alone or in any batch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import initialization as init
from transformers.configuration_utils import PreTrainedConfig
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.modeling_utils import PreTrainedModel

MODEL_TYPE = "seqstruct-lstm"
POOLINGS = ("max", "mean", "last")


class LstmConfig(PreTrainedConfig):
    """Settings of `LstmForSequenceClassification`. Keyword arguments only, like every transformers 5
    config; num_labels, id2label, label2id and problem_type are `PreTrainedConfig`'s own."""

    model_type = MODEL_TYPE

    vocab_size: int = 33  # rows of the embedding: len(tokenizer) (33 is ESM-2's vocabulary)
    embedding_size: int = 128  # width of a token embedding; the encoder's width to copy its embeddings
    hidden_size: int = 256  # LSTM state width per direction; pooled vectors are 2 * hidden_size wide
    num_layers: int = 1  # stacked BiLSTM layers
    dropout: float = 0.1  # between LSTM layers (when num_layers > 1), before the head and inside it
    pooling: str = "max"  # max | mean over valid positions | last (final forward + backward states)
    pad_token_id: int = 0  # tokenizer.pad_token_id; the mask is derived from it when none is given

    def __post_init__(self, **kwargs: Any) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"LstmConfig.pooling must be one of {POOLINGS}, got {self.pooling!r}")
        sizes = {
            "vocab_size": self.vocab_size,
            "embedding_size": self.embedding_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
        }
        if any(value < 1 for value in sizes.values()):
            raise ValueError(f"LstmConfig sizes must be >= 1, got {sizes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LstmConfig.dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"pad_token_id {self.pad_token_id} is outside the vocabulary (size {self.vocab_size})"
            )
        super().__post_init__(**kwargs)


# ---------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------


class LstmEncoder(nn.Module):
    """Embedding + BiLSTM + pooling: token ids [B, L] -> one vector per sequence [B, 2 * hidden_size]."""

    def __init__(self, config: LstmConfig) -> None:
        super().__init__()
        self.pooling = config.pooling
        self.pad_token_id = config.pad_token_id
        self.embeddings = nn.Embedding(
            config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id
        )
        self.rnn = nn.LSTM(
            config.embedding_size,
            config.hidden_size,
            num_layers=config.num_layers,
            # nn.LSTM applies dropout to the outputs of every layer but the last (and warns if asked to
            # with one layer).
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
            bidirectional=True,
        )

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        if attention_mask is None:
            attention_mask = input_ids.ne(self.pad_token_id)
        mask = attention_mask.bool()  # [B, L]
        lengths = mask.sum(dim=1)  # [B]
        check_right_padded(mask, lengths)

        embedded = self.embeddings(input_ids)  # [B, L, E]
        # Packing runs each sequence for exactly its own length, in both directions: the backward pass
        # starts at the last real token, never at padding. pack_padded_sequence wants lengths on the CPU.
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_states, (h_n, _) = self.rnn(packed)

        if self.pooling == "last":
            # h_n: [num_layers * 2, B, H], returned in the input's batch order. The top layer's forward
            # state has read the whole sequence left to right, its backward state right to left.
            return torch.cat([h_n[-2], h_n[-1]], dim=-1)  # [B, 2H]

        states, _ = pad_packed_sequence(packed_states, batch_first=True, total_length=input_ids.shape[1])
        # states: [B, L, 2H], zeros past each sequence's length.
        valid = mask.unsqueeze(-1)  # [B, L, 1]
        if self.pooling == "mean":
            return (states * valid).sum(dim=1) / lengths.unsqueeze(-1).to(states.dtype)  # [B, 2H]
        return states.masked_fill(~valid, float("-inf")).amax(dim=1)  # [B, 2H]


def check_right_padded(mask: Tensor, lengths: Tensor) -> None:
    """Raise unless every row of `mask` [B, L] is a non-empty run of 1s followed by 0s: the lengths
    that packing reads from it would otherwise select the wrong tokens, silently."""
    empty = (lengths == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"LSTM input rows {empty} have no tokens (attention_mask all zero)")
    positions = torch.arange(mask.shape[1], device=mask.device)  # [L]
    if not torch.equal(mask, positions.unsqueeze(0) < lengths.unsqueeze(1)):
        raise ValueError(
            "the LSTM expects right-padded batches (attention_mask: 1s, then 0s); got left or inner padding"
        )


class LstmForSequenceClassification(PreTrainedModel):
    """BiLSTM sequence classifier / regressor; see the module docstring.

    Head: dropout, Linear(2H -> H), tanh, dropout, Linear(H -> num_labels), the shape of
    EsmForSequenceClassification's head, so every arm of a learning curve ends in the same kind of head.
    """

    config_class = LstmConfig
    base_model_prefix = "lstm"
    main_input_name = "input_ids"
    # The loss is a mean over the batch and ignores `num_items_in_batch`: without this flag the Trainer,
    # seeing **kwargs in forward, would assume the model normalises by it and skip its own scaling for
    # gradient accumulation.
    accepts_loss_kwargs = False

    def __init__(self, config: LstmConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.lstm = LstmEncoder(config)
        self.dropout = nn.Dropout(config.dropout)
        self.dense = nn.Linear(2 * config.hidden_size, config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # transformers' guarded init functions (`init.*`) skip a tensor flagged `_is_hf_initialized`,
        # so `from_pretrained` initialises only what a checkpoint lacks. Writes into a slice lose that
        # flag, hence the explicit checks before them.
        if isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=0.1)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LSTM):
            # PyTorch's own LSTM init, U(-1/sqrt(H), 1/sqrt(H)) everywhere (drawn again here because a
            # model built on the meta device by from_pretrained has had no init at all) ...
            bound = 1.0 / math.sqrt(module.hidden_size)
            for param in module.parameters():
                init.uniform_(param, -bound, bound)
            # ... except the forget gate, whose bias (b_ih + b_hh) starts at 1 (Gers et al. 2000;
            # Jozefowicz et al. 2015): the cell state is kept rather than halved at each step early in
            # training, so gradients reach the start of long sequences.
            gate = slice(
                module.hidden_size, 2 * module.hidden_size
            )  # gate order: input, forget, cell, output
            for name, param in module.named_parameters():
                if name.startswith("bias_") and not getattr(param, "_is_hf_initialized", False):
                    init.constant_(param[gate], 1.0 if name.startswith("bias_ih") else 0.0)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.lstm.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.lstm.embeddings = value

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        """input_ids, attention_mask: [B, L], right-padded; labels: [B] class ids, [B] or [B, num_labels]
        targets. token_type_ids (which BERT tokenizers emit and DataCollatorWithPadding passes on) and
        other keyword arguments are accepted and ignored: there are no segments, attentions or per-layer
        states to return. Returns logits [B, num_labels] and, with labels, the loss
        (`sequence_classification_loss`)."""
        pooled = self.lstm(input_ids, attention_mask)  # [B, 2H]
        hidden = self.dropout(torch.tanh(self.dense(self.dropout(pooled))))  # [B, H]
        logits = self.out_proj(hidden)  # [B, num_labels]
        loss = None if labels is None else sequence_classification_loss(logits, labels, self.config)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def sequence_classification_loss(logits: Tensor, labels: Tensor, config: PreTrainedConfig) -> Tensor:
    """The loss transformers' BertForSequenceClassification computes, by `config.problem_type`: MSE for
    "regression", cross-entropy for "single_label_classification", BCE-with-logits for
    "multi_label_classification". A None problem_type is set on `config` as BERT sets it: regression
    when num_labels == 1, single-label when the labels are integers, multi-label otherwise.
    Regression and multi-label targets are cast to the logits' dtype (BERT would fail on integer ones)."""
    num_labels = logits.shape[-1]
    if config.problem_type is None:
        if num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"

    if config.problem_type == "regression":
        targets = labels.to(logits.dtype)
        if num_labels == 1:
            return nn.functional.mse_loss(logits.squeeze(), targets.squeeze())
        return nn.functional.mse_loss(logits, targets)
    if config.problem_type == "single_label_classification":
        return nn.functional.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
    if config.problem_type == "multi_label_classification":
        return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    raise ValueError(f"unknown problem_type {config.problem_type!r}")


# ---------------------------------------------------------------------------------------------------
# Building, pretrained embeddings, registration
# ---------------------------------------------------------------------------------------------------


def lstm_config_for(tokenizer: Any, num_labels: int, **settings: Any) -> LstmConfig:
    """An `LstmConfig` reading `tokenizer`'s vocabulary (vocab_size = len(tokenizer), its pad id);
    `settings` are the other `LstmConfig` fields and PreTrainedConfig keywords (problem_type, id2label)."""
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token; the LSTM needs one to batch sequences")
    return LstmConfig(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, num_labels=num_labels, **settings
    )


def encoder_embedding_size(encoder_dir: str | Path) -> int:
    """Width of a saved encoder's token embeddings, from its config.json: `embedding_size` where the
    model factorises its embeddings (ALBERT, ELECTRA), `hidden_size` otherwise."""
    config = json.loads((Path(encoder_dir) / "config.json").read_text())
    for key in ("embedding_size", "hidden_size"):
        if config.get(key) is not None:
            return int(config[key])
    raise ValueError(f"{encoder_dir}/config.json has neither embedding_size nor hidden_size")


def init_embeddings_from(model: LstmForSequenceClassification, encoder_dir: str | Path) -> None:
    """Copy the token embeddings of the encoder saved in `encoder_dir` into `model`'s embedding: the
    "LSTM with pretrained embeddings" arm of Wang et al. (2020). The two must share a tokenizer, so the
    vocabulary sizes (and pad ids, where the encoder records one) must agree, and the LSTM's
    embedding_size must equal the encoder's width (`encoder_embedding_size`)."""
    from transformers import AutoModel  # the auto classes are needed here only

    encoder = AutoModel.from_pretrained(encoder_dir, use_safetensors=True)
    weight = encoder.get_input_embeddings().weight  # [V, D]
    target = model.get_input_embeddings().weight  # [V', E]
    if weight.shape[0] != target.shape[0]:
        raise ValueError(
            f"encoder {encoder_dir} has a vocabulary of {weight.shape[0]} tokens, the LSTM {target.shape[0]}; "
            "build the LSTM config from the encoder's tokenizer (lstm_config_for)"
        )
    encoder_pad = getattr(encoder.config, "pad_token_id", None)
    if encoder_pad is not None and encoder_pad != model.config.pad_token_id:
        raise ValueError(
            f"encoder {encoder_dir} pads with token {encoder_pad}, the LSTM with {model.config.pad_token_id}: "
            "not the same tokenizer"
        )
    if weight.shape[1] != target.shape[1]:
        raise ValueError(
            f"encoder {encoder_dir} embeds tokens in {weight.shape[1]} dimensions, the LSTM in {target.shape[1]}; "
            f"set embedding_size={weight.shape[1]} (lstm_config_for(..., embedding_size={weight.shape[1]}))"
        )
    with torch.no_grad():
        target.copy_(weight.to(dtype=target.dtype, device=target.device))


def register() -> None:
    """Make `AutoConfig` and `AutoModelForSequenceClassification` load a saved LSTM (model_type
    "seqstruct-lstm") without trust_remote_code. Idempotent; seqstruct.registration runs it once
    transformers is in use after `import seqstruct`."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    AutoConfig.register(MODEL_TYPE, LstmConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(LstmConfig, LstmForSequenceClassification, exist_ok=True)
