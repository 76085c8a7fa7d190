"""Pooling: one vector per sequence from per-token hidden states.

Names (`POOLINGS`):
- `cls`: the first token's state of the last layer ([CLS] / <cls>).
- `mean`: the masked mean of the last layer's token states.
- `max`: the masked element-wise maximum of the last layer's token states.
- `first-last`: the masked mean, over tokens, of the average of the first transformer layer's and the
  last layer's states (hidden_states[1] and hidden_states[-1]). This is SimCSE's corrected
  "avg_first_last": its first release averaged the embedding layer (hidden_states[0]) instead.
- `layer-attention`: layer-wise attention pooling (Oh et al., COLING 2022) added as a residual to the base
  model's own pooling (mean unless said otherwise), through a zero-initialised output layer: untrained, it
  is that pooling exactly. `layer-attention-paper` is the paper's form, tanh(W_o [o; c_L]), which starts
  near [CLS] pooling. `-1q` names their single-query variants. See `LayerAttentionPooling`.

Which tokens are pooled (`include_special_tokens`): our protein encoders average residues only, leaving
out the <cls>/<eos> markers, which are not part of the protein (ESM's mean embeddings do the same). A
sentence-transformers model keeps its own convention: its `Pooling` averages every attended token,
[CLS] and [SEP] included, so a pooling built for it (`include_special_tokens=True`) gives what
`SentenceTransformer(...).encode` gives. Padding never counts. The same token set feeds `max`,
`first-last` and the per-layer means of layer attention.

Two layers of code: pure functions on tensors (`mean_pool`, `max_pool`, ..., `layer_attention`), then
sentence-transformers modules that read the features dict that sentence-transformers' `Transformer`
module writes and are saved and loaded with the model. `pooling_module` picks the module: where
sentence-transformers' own `Pooling` computes the same vectors (`cls`, whatever the token set; `mean`
and `max` over every attended token, special tokens included) it is that one, so that a saved model
reloads with plain `SentenceTransformer(dir)`; otherwise seqstruct's `SeqPooling` (residue-only mean
and max, first-last) or `LayerAttentionPooling`, which `seqstruct.models.sentence.load_sentence_model`
loads (`SENTENCE_MODULES` is its allowlist of seqstruct's classes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from sentence_transformers.base.modules import Module
from sentence_transformers.sentence_transformer.modules import Pooling
from torch import Tensor, nn

# The names live apart so that the `seqstruct` command lists them without torch; re-exported here.
from seqstruct.models.pooling_names import (
    LAYER_ATTENTION,
    LAYER_ATTENTION_VARIANTS,
    NEEDS_HIDDEN_STATES,
    POOLINGS,
)

# ---------------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------------


def mean_pool(hidden: Tensor, token_mask: Tensor) -> Tensor:
    """hidden: (B, L, D); token_mask: (B, L), 1 on tokens to average. Returns (B, D)."""
    weights = token_mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
    counts = weights.sum(dim=1).clamp(min=1.0)  # (B, 1); an empty row pools to zeros, not NaN
    return (hidden * weights).sum(dim=1) / counts


def cls_pool(hidden: Tensor, token_mask: Tensor) -> Tensor:
    """hidden: (B, L, D). Returns the first token's state (B, D); `token_mask` is unused."""
    return hidden[:, 0]


def max_pool(hidden: Tensor, token_mask: Tensor) -> Tensor:
    """hidden: (B, L, D); token_mask: (B, L). Element-wise max over masked-in tokens (B, D); a masked
    position never wins, and a row with no token pools to zeros (not -inf)."""
    keep = token_mask.bool().unsqueeze(-1)  # (B, L, 1)
    lowest = torch.finfo(hidden.dtype).min
    pooled = hidden.masked_fill(~keep, lowest).max(dim=1).values  # (B, D)
    return torch.where(keep.any(dim=1), pooled, torch.zeros_like(pooled))


def first_last_pool(hidden_states: Sequence[Tensor], token_mask: Tensor) -> Tensor:
    """hidden_states: (L+1) x (B, T, D), the embedding output first; token_mask: (B, T). The masked mean
    of (first transformer layer + last layer) / 2, i.e. hidden_states[1] and hidden_states[-1]: (B, D)."""
    if len(hidden_states) < 2:
        raise ValueError(
            f"first-last pooling needs the embedding output and >= 1 layer, got {len(hidden_states)}"
        )
    return mean_pool((hidden_states[1] + hidden_states[-1]) / 2, token_mask)


def first_token(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """hidden: (B, T, D); attention_mask: (B, T). The state of each row's first attended token (B, D):
    position 0 under right padding, as ours and BERT's tokenizers pad; also right under left padding."""
    first = attention_mask.to(torch.int32).argmax(dim=1)  # (B,)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]


def token_mask(
    input_ids: Tensor, attention_mask: Tensor, special_token_ids: Sequence[int], include_special_tokens: bool
) -> Tensor:
    """(B, T) bool: the tokens a pooling reads. Padding (attention_mask 0) never; the special tokens
    (`special_token_ids`, the <cls>/<eos> or [CLS]/[SEP] a tokenizer adds) only if included."""
    mask = attention_mask.bool()
    if not include_special_tokens and special_token_ids:
        specials = torch.tensor(list(special_token_ids), device=input_ids.device, dtype=input_ids.dtype)
        mask = mask & ~torch.isin(input_ids, specials)
    return mask


def special_token_ids(tokenizer: Any) -> list[int]:
    """Ids of the tokens a tokenizer adds around every sequence (<cls>/<eos>, [CLS]/[SEP]): what the
    tokenizer makes of an empty input."""
    return sorted(set(tokenizer("", add_special_tokens=True)["input_ids"]))


def last_layer_pool(mode: str, hidden: Tensor, attention_mask: Tensor, mask: Tensor) -> Tensor:
    """hidden: (B, T, D), the last layer's states; attention_mask: (B, T); mask: (B, T), the tokens
    pooled (`token_mask`). Pooling `mode` (cls | mean | max) of the last layer: (B, D)."""
    if mode == "cls":
        return first_token(hidden, attention_mask)
    if mode == "mean":
        return mean_pool(hidden, mask)
    if mode == "max":
        return max_pool(hidden, mask)
    raise ValueError(f"last-layer pooling must be cls, mean or max; got {mode!r}")


def layer_summaries(
    hidden_states: Sequence[Tensor], attention_mask: Tensor, mask: Tensor
) -> tuple[Tensor, Tensor]:
    """Per transformer layer l = 1..L (hidden_states[0], the embedding output, left out):
    ([CLS] states (B, L, D), masked token means (B, L, D))."""
    layers = torch.stack(tuple(hidden_states[1:]), dim=1)  # (B, L, T, D)
    cls = torch.stack([first_token(h, attention_mask) for h in hidden_states[1:]], dim=1)  # (B, L, D)
    weights = mask.to(layers.dtype)[:, None, :, None]  # (B, 1, T, 1)
    counts = weights.sum(dim=2).clamp(min=1.0)  # (B, 1, 1)
    means = (layers * weights).sum(dim=2) / counts  # (B, L, D)
    return cls, means


def layer_attention(query: Tensor, key: Tensor, value: Tensor) -> Tensor:
    """Scaled dot-product attention over layers, averaged over queries.

    query: (B, Q, d), one row per querying layer; key, value: (B, L, d), one row per layer. Each query
    attends over the L layers (softmax over layers); the Q results are averaged. Returns (B, d)."""
    scores = query @ key.transpose(1, 2) / math.sqrt(query.shape[-1])  # (B, Q, L)
    return (scores.softmax(dim=-1) @ value).mean(dim=1)  # (B, Q, d) -> (B, d)


# Last-layer poolings as (hidden (B, T, D), token_mask (B, T)) -> (B, D): what a training loop that
# holds only the last hidden state can call (`get_pooling`).
TOKEN_POOLINGS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mean": mean_pool,
    "cls": cls_pool,
    "max": max_pool,
}


def get_pooling(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The last-layer pooling function `name` (one of TOKEN_POOLINGS)."""
    if name in NEEDS_HIDDEN_STATES:
        raise ValueError(
            f"pooling {name!r} reads every layer's hidden states, not just the last one; use "
            f"pooling_module({name!r}, ...) on the features of an encoder that outputs them"
        )
    if name not in TOKEN_POOLINGS:
        raise ValueError(f"unknown pooling {name!r}; expected one of {sorted(POOLINGS)}")
    return TOKEN_POOLINGS[name]


# ---------------------------------------------------------------------------------------------------
# sentence-transformers modules
# ---------------------------------------------------------------------------------------------------


def _hidden_states(features: dict[str, Any], name: str) -> Sequence[Tensor]:
    states = features.get("all_layer_embeddings")
    if states is None:
        raise ValueError(
            f"pooling {name!r} needs every layer's hidden states (features['all_layer_embeddings']); load "
            "the encoder with output_hidden_states=True (seqstruct.models.sentence.sentence_model does)"
        )
    return states


def _check_padded(features: dict[str, Any]) -> None:
    if "cu_seq_lens_q" in features:
        raise ValueError(
            "seqstruct poolings take padded batches; unpadded (flash-attention varlen) inputs are not "
            "supported: load the encoder with unpad_inputs=False or another attention implementation"
        )


class SeqPooling(Module):
    """Parameter-free pooling (`cls`, `mean`, `max`, `first-last`) as a sentence-transformers module.

    Reads features["token_embeddings"] (B, T, D), ["attention_mask"] (B, T), ["input_ids"] (B, T) and,
    for first-last, ["all_layer_embeddings"]; writes features["sentence_embedding"] (B, D). Saved as
    its config alone (config.json: mode, include_special_tokens, special_token_ids).
    """

    config_keys: list[str] = ["mode", "include_special_tokens", "special_token_ids"]
    MODES = ("cls", "mean", "max", "first-last")

    def __init__(
        self, mode: str = "mean", include_special_tokens: bool = False, special_token_ids: Sequence[int] = ()
    ) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"SeqPooling mode must be one of {self.MODES}; got {mode!r}")
        self.mode = mode  # which pooling
        self.include_special_tokens = include_special_tokens  # pool <cls>/<eos> ([CLS]/[SEP]) too
        self.special_token_ids = [int(i) for i in special_token_ids]  # the ids left out when not included
        self.needs_hidden_states = mode in NEEDS_HIDDEN_STATES

    @property
    def pooling_name(self) -> str:
        return self.mode

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        _check_padded(features)
        hidden = features["token_embeddings"]  # (B, T, D)
        attention_mask = features["attention_mask"]
        mask = token_mask(
            features["input_ids"], attention_mask, self.special_token_ids, self.include_special_tokens
        )
        if self.mode == "first-last":
            pooled = first_last_pool(_hidden_states(features, self.mode), mask)
        else:
            pooled = last_layer_pool(self.mode, hidden, attention_mask, mask)
        features["sentence_embedding"] = pooled
        return features

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        self.save_config(output_path)

    def __repr__(self) -> str:
        return f"SeqPooling({self.get_config_dict()})"


class LayerAttentionPooling(Module):
    """Layer-wise attention pooling (Oh et al., "Don't Judge a Language Model by Its Last Layer:
    Contrastive Learning with Layer-Wise Attention Pooling", COLING 2022), by default as a residual on
    the base model's own pooling.

    For the transformer layers l = 1..L (the embedding output, hidden_states[0], is left out: its [CLS]
    is the same vector for every input, so as a query it carries nothing about the sequence), with D the
    hidden size and T the tokens:

        c_l = [CLS] state of layer l                                  (D,)
        m_l = masked mean of layer l's token states                   (D,)   (the pooled token set)
        Q   = tanh(W_q c_l + b_q)   for each querying layer          (Q, D)
        K   = tanh(W_k m_l + b_k),  V = tanh(W_v m_l + b_v)           (L, D)
        o   = mean over queries of softmax(Q K^T / sqrt(D)) V        (D,)   (softmax over layers)
        h   = W_o [o ; c_L] + b_o                                     (D,)   W_o: (D, 2D)
        z   = base + h            form="residual" (default)
        z   = tanh(h)             form="paper"

    base is the base model's own pooling of the last layer (`base`: mean, cls or max, over the same
    token set). The residual form starts W_o and b_o at zero, so an untrained module is exactly that
    pooling and training departs from it only as far as the loss asks. The paper's form starts from
    N(0, 0.02) weights: the attended means o are ~0.2 of the [CLS] branch then, so untrained it is close
    to [CLS] pooling, far from the mean pooling MiniLM was trained with, and 100 contrastive steps did
    not recover (docs/results.md, issue 6). At step 0 only W_o and b_o get a gradient in the residual
    form (the rest reach the output through W_o = 0); from the first update on, all of them do.

    Choices the paper leaves open, made here: tanh on all three projections (bounded scores keep the
    softmax over layers soft at the start of training; tanh as in BERT's pooler and SimCSE's MLP); one
    attention head of width D; the 1/sqrt(D) scale; the output as one Linear(2D -> D) (SimCSE's MLP
    shape); the last layer's [CLS] is the last hidden state's (after ESM's final LayerNorm).
    `queries="all"` lets every layer's [CLS] query (Q = L); `queries="last"` only the last layer's (Q = 1).

    Weights start from N(0, 0.02) (transformers' initializer_range; W_o then zeroed in the residual form)
    and zero biases, drawn from a generator seeded by `seed`, so an untrained module is deterministic and
    the global RNG is untouched. Saved as config.json plus model.safetensors in its folder; a config saved
    before `form` existed is the paper's form.
    """

    config_keys: list[str] = [
        "hidden_size",
        "num_layers",
        "queries",
        "include_special_tokens",
        "special_token_ids",
        "seed",
        "form",
        "base",
    ]
    needs_hidden_states = True
    FORMS = ("residual", "paper")
    BASES = ("mean", "cls", "max")

    def __init__(
        self,
        hidden_size: int,
        num_layers: int,
        queries: str = "all",
        include_special_tokens: bool = False,
        special_token_ids: Sequence[int] = (),
        seed: int = 0,
        form: str = "residual",
        base: str = "mean",
    ) -> None:
        super().__init__()
        if queries not in ("all", "last"):
            raise ValueError(f"LayerAttentionPooling queries must be 'all' or 'last'; got {queries!r}")
        if form not in self.FORMS:
            raise ValueError(f"LayerAttentionPooling form must be one of {self.FORMS}; got {form!r}")
        if base not in self.BASES:
            raise ValueError(f"LayerAttentionPooling base must be one of {self.BASES}; got {base!r}")
        if hidden_size < 1 or num_layers < 1:
            raise ValueError(f"hidden_size and num_layers must be >= 1; got {hidden_size}, {num_layers}")
        self.hidden_size = hidden_size  # D: width of every layer's states and of the output
        self.num_layers = num_layers  # L: transformer layers attended over (embedding output excluded)
        self.queries = queries  # "all": every layer's [CLS] queries; "last": only the last layer's
        self.include_special_tokens = include_special_tokens  # pool <cls>/<eos> into the layer means
        self.special_token_ids = [int(i) for i in special_token_ids]  # ids left out when not included
        self.seed = seed  # seeds the initial weights
        self.form = form  # "residual": base + W_o[o; c_L], W_o from zero | "paper": tanh(W_o[o; c_L])
        self.base = base  # the residual's base: the base model's own pooling (unused by "paper")
        # skip_init: no draw from the global RNG; the weights are drawn below from a seeded generator.
        self.query = nn.utils.skip_init(nn.Linear, hidden_size, hidden_size)
        self.key = nn.utils.skip_init(nn.Linear, hidden_size, hidden_size)
        self.value = nn.utils.skip_init(nn.Linear, hidden_size, hidden_size)
        self.output = nn.utils.skip_init(nn.Linear, 2 * hidden_size, hidden_size)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            # Every weight is drawn in both forms, so Q, K, V (and the paper's W_o) are those of old saves.
            for linear in (self.query, self.key, self.value, self.output):
                linear.weight.copy_(torch.randn(linear.weight.shape, generator=generator) * 0.02)
                linear.bias.zero_()
            if form == "residual":
                self.output.weight.zero_()

    @property
    def pooling_name(self) -> str:
        return next(n for n, v in LAYER_ATTENTION_VARIANTS.items() if v == (self.form, self.queries))

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        _check_padded(features)
        states = _hidden_states(features, self.pooling_name)
        if len(states) != self.num_layers + 1:
            raise ValueError(
                f"{self.pooling_name} pooling was built for {self.num_layers} layers (+ the embedding "
                f"output); the encoder gave {len(states)} hidden states"
            )
        attention_mask = features["attention_mask"]
        mask = token_mask(
            features["input_ids"], attention_mask, self.special_token_ids, self.include_special_tokens
        )
        cls, means = layer_summaries(states, attention_mask, mask)  # (B, L, D) each
        querying = cls if self.queries == "all" else cls[:, -1:]  # (B, Q, D)
        attended = layer_attention(
            torch.tanh(self.query(querying)), torch.tanh(self.key(means)), torch.tanh(self.value(means))
        )  # (B, D)
        last_cls = cls[:, -1]  # (B, D)
        head = self.output(torch.cat([attended, last_cls], dim=-1))  # (B, D)
        if self.form == "paper":
            pooled = torch.tanh(head)
        else:
            # The base pools features["token_embeddings"], as the base model's own pooling module does.
            pooled = last_layer_pool(self.base, features["token_embeddings"], attention_mask, mask) + head
        features["sentence_embedding"] = pooled
        return features

    def get_embedding_dimension(self) -> int:
        return self.hidden_size

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        # Always safetensors: no pickled weights, whatever the caller asks.
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=True)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token: bool | str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        **kwargs: Any,
    ) -> LayerAttentionPooling:
        hub = {
            "subfolder": subfolder,
            "token": token,
            "cache_folder": cache_folder,
            "revision": revision,
            "local_files_only": local_files_only,
        }
        config = cls.load_config(model_name_or_path, **hub)
        # Saved before the residual form existed: those weights were trained in the paper's form.
        config.setdefault("form", "paper")
        module = cls(**config)
        if cls.load_file_path(model_name_or_path, filename="model.safetensors", **hub) is None:
            raise FileNotFoundError(
                f"{model_name_or_path}/{subfolder}: no model.safetensors for {cls.__name__}"
            )
        return cls.load_torch_weights(model_name_or_path, model=module, **hub)


def pooling_module(
    name: str,
    hidden_size: int,
    num_layers: int,
    special_token_ids: Sequence[int],
    include_special_tokens: bool,
    seed: int = 0,
    base: str = "mean",
) -> nn.Module:
    """A fresh sentence-transformers pooling module for pooling `name` (one of POOLINGS): the library's
    own `Pooling` where it computes the same vectors (`st_native`), else seqstruct's module. base: the
    pooling a residual layer-attention starts as (the base model's own: cls, mean or max)."""
    if st_native(name, include_special_tokens):
        return Pooling(hidden_size, pooling_mode=name)
    if name in LAYER_ATTENTION:
        form, queries = LAYER_ATTENTION_VARIANTS[name]
        return LayerAttentionPooling(
            hidden_size,
            num_layers,
            queries,
            include_special_tokens,
            list(special_token_ids),
            seed,
            form=form,
            base=base,
        )
    if name not in POOLINGS:
        raise ValueError(f"unknown pooling {name!r}; expected one of {list(POOLINGS)}")
    return SeqPooling(name, include_special_tokens, list(special_token_ids))


def st_native(name: str, include_special_tokens: bool) -> bool:
    """Whether sentence-transformers' `Pooling` computes pooling `name` over this token set. Its cls is
    the first attended token, as ours; its mean and max run over every attended token, so they match
    ours only with the special tokens included (MiniLM's convention, not our proteins' residue-only
    one). first-last and layer attention are seqstruct's alone."""
    return name == "cls" or (include_special_tokens and name in ("mean", "max"))


def pooling_name(module: nn.Module) -> str | None:
    """The POOLINGS name of a pooling module: ours, or sentence-transformers' `Pooling` in a single
    cls/mean/max mode; None for anything else."""
    name = getattr(module, "pooling_name", None)
    if isinstance(name, str):
        return name
    if isinstance(module, Pooling) and module.pooling_mode in ("cls", "mean", "max"):
        return str(module.pooling_mode)
    return None


def needs_hidden_states(module: nn.Module) -> bool:
    """Whether a pooling module (or a chain of modules) reads every layer's hidden states. Ours say so;
    sentence-transformers' Pooling and Normalize read the last layer only; anything else is assumed to."""
    children = list(module) if isinstance(module, nn.Sequential) else [module]
    return any(
        getattr(child, "needs_hidden_states", type(child).__name__ not in ("Pooling", "Normalize", "Dense"))
        for child in children
    )


# ---------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------

# seqstruct's own module classes by the `type` a modules.json names them with: the only classes outside
# `sentence_transformers.*` that `seqstruct.models.sentence.load_sentence_model` builds (an allowlist).
# Already imported with this module, so loading through it imports no code a model file chooses.
SENTENCE_MODULES: dict[str, type[nn.Module]] = {
    f"{cls.__module__}.{cls.__name__}": cls for cls in (SeqPooling, LayerAttentionPooling)
}
