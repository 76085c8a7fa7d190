"""FAVOR+ as a transformers attention implementation: `attn_implementation="favor"`.

`register()` (run by seqstruct.registration: at `import seqstruct` when transformers is loaded, else
when it first is) adds three things to transformers:
- the attention function, to `AttentionInterface`, so every encoder whose attention goes through that
  interface (BERT, RoBERTa, ESM, ...) can use it;
- a mask function, to `AttentionMaskInterface`: it hands over the [B, L] key-padding mask as it is, so
  no L×L mask is built (with no mask function registered transformers would pass no mask at all);
- three hooks on `PreTrainedModel` (seqstruct.models.hooks), because a registered function alone cannot
  hold state: at `post_init` each attention module of a model built with "favor" gets its projection buffer (so `from_pretrained`
  loads a saved one instead of dropping it as unexpected), a buffer missing from a checkpoint is drawn
  in `_initialize_weights` like any other missing weight, and a model whose config carries `favor`
  settings defaults to "favor" when no implementation is asked for: a saved Performer reloads as one.

The projection W [m, d_head] is a persistent buffer on each attention module, shared by its heads. It
is drawn from a generator seeded by (seed, layer, step), never from the global RNG: every DDP rank
draws the same matrix, and a resumed run the same as an uninterrupted one. It changes only through
`redraw_projections` (called by `FavorRedrawCallback` every `redraw_interval` optimiser steps), so
eval and inference never redraw.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AttentionInterface, PreTrainedModel, TrainerCallback
from transformers.masking_utils import AttentionMaskInterface

from seqstruct.attention.favor import favor_attention, gaussian_projection
from seqstruct.config import FavorConfig
from seqstruct.models import hooks

logger = logging.getLogger(__name__)

NAME = "favor"
BUFFER = "favor_projection"
# Attention modules that scale queries by 1/√d themselves and pass scaling=1.
_QUERY_PRESCALED = frozenset({"EsmSelfAttention"})


# ---------------------------------------------------------------------------------------------------
# Settings and projections
# ---------------------------------------------------------------------------------------------------


def favor_settings(config: Any) -> FavorConfig:
    """The FAVOR+ settings stored in a transformers config (`config.favor`), defaults if absent."""
    stored = getattr(config, NAME, None) or {}
    known = {f.name for f in dataclasses.fields(FavorConfig)}
    unknown = sorted(set(stored) - known)
    if unknown:
        raise ValueError(f"config.favor has unknown key(s) {unknown}; expected some of {sorted(known)}")
    return check_settings(FavorConfig(**stored))


def check_settings(settings: FavorConfig) -> FavorConfig:
    """Validate FAVOR+ settings, returning them unchanged."""
    if settings.features not in ("orthogonal", "iid"):
        raise ValueError(f"favor.features must be 'orthogonal' or 'iid', got {settings.features!r}")
    if settings.kernel not in ("auto", "torch", "triton"):
        raise ValueError(f"favor.kernel must be 'auto', 'torch' or 'triton', got {settings.kernel!r}")
    if settings.num_features < 1 or settings.causal_chunk < 1 or settings.redraw_interval < 0:
        raise ValueError(f"favor settings out of range: {settings}")
    return settings


def attention_modules(model: nn.Module) -> Iterator[tuple[int, nn.Module]]:
    """(layer index, module) for every attention module that calls transformers' attention interface.

    They are recognised by the attributes that interface's callers share (a config, `scaling`,
    `is_causal`), so BERT, RoBERTa, ESM and their relatives are found without a list of class names.
    """
    index = 0
    for module in model.modules():
        if all(hasattr(module, name) for name in ("config", "scaling", "is_causal")) and not isinstance(
            module, PreTrainedModel
        ):
            yield index, module
            index += 1


def _head_dim(module: nn.Module) -> int:
    for name in ("attention_head_size", "head_dim", "head_size"):
        value = getattr(module, name, None)
        if isinstance(value, int):
            return value
    config = module.config
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _draw_seed(seed: int, layer: int, step: int) -> int:
    # Distinct, reproducible streams per (seed, layer, step); large odd multipliers keep them apart.
    return (seed * 1_000_003 + layer * 7_919 + step * 104_729) % (2**63 - 1)


def draw_projection(settings: FavorConfig, head_dim: int, layer: int, step: int) -> Tensor:
    """The projection [m, head_dim] a layer uses from training step `step` on (CPU, float32)."""
    generator = torch.Generator().manual_seed(_draw_seed(settings.seed, layer, step))
    return gaussian_projection(
        settings.num_features,
        head_dim,
        orthogonal=settings.features == "orthogonal",
        scaling=settings.norm_scaling,  # type: ignore[arg-type]
        generator=generator,
    )


def _attach(model: nn.Module, settings: FavorConfig, *, draw: bool) -> None:
    """Give every attention module its projection buffer (replacing one of another shape)."""
    for layer, module in attention_modules(model):
        existing = getattr(module, BUFFER, None)
        head_dim = _head_dim(module)
        if existing is not None and existing.shape == (settings.num_features, head_dim) and not draw:
            module.favor_layer = layer
            continue
        device = existing.device if existing is not None else _module_device(module)
        if device.type == "meta":  # from_pretrained: loaded, or drawn in _initialize_weights
            value = torch.empty(settings.num_features, head_dim, device="meta")
        else:
            value = draw_projection(settings, head_dim, layer, 0).to(device)
        module.register_buffer(BUFFER, value, persistent=True)
        module.favor_layer = layer


def _module_device(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    return torch.device("cpu")


def redraw_projections(model: nn.Module, step: int) -> int:
    """Redraw every layer's projection for training step `step`; returns how many were redrawn.

    Deterministic in (seed, layer, step), so DDP ranks agree without communicating."""
    settings = favor_settings(_config_of(model))
    count = 0
    with torch.no_grad():
        for layer, module in attention_modules(model):
            buffer = getattr(module, BUFFER, None)
            if buffer is None:
                continue
            buffer.copy_(draw_projection(settings, buffer.shape[1], layer, step))
            count += 1
    return count


def _config_of(model: nn.Module) -> Any:
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError("expected a transformers model (with .config)")
    return config


def performerize(
    model: PreTrainedModel,
    *,
    num_features: int | None = None,
    redraw_interval: int | None = None,
    settings: FavorConfig | None = None,
) -> PreTrainedModel:
    """Switch a loaded transformers encoder to FAVOR+ attention, in place, and return it.

    Weights are untouched (the Performer paper's backward compatibility: the model is then usually
    fine-tuned briefly to recover); each attention module gets a freshly drawn projection, and the
    settings go into `model.config.favor` so `save_pretrained` keeps them.
    """
    base = settings or (
        FavorConfig(**model.config.favor) if getattr(model.config, NAME, None) else FavorConfig()
    )
    updates = {
        key: value
        for key, value in (("num_features", num_features), ("redraw_interval", redraw_interval))
        if value is not None
    }
    chosen = dataclasses.replace(base, **updates)
    check_settings(chosen)  # before anything about the model changes
    model.config.favor = dataclasses.asdict(chosen)
    model.set_attn_implementation(NAME)
    if model.config._attn_implementation != NAME:
        raise ValueError(
            f"{type(model).__name__} does not route attention through transformers' AttentionInterface"
        )
    _attach(model, chosen, draw=True)
    if not any(True for _ in attention_modules(model)):
        raise ValueError(f"no attention modules found in {type(model).__name__}")
    return model


class FavorRedrawCallback(TrainerCallback):
    """Redraws FAVOR+ projections every `redraw_interval` optimiser steps (at the end of the step, so
    gradient accumulation and checkpoint recomputation always see one projection per step)."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is None or getattr(model.config, NAME, None) is None:
            return
        interval = favor_settings(model.config).redraw_interval
        if interval and state.global_step % interval == 0:
            redraw_projections(model, state.global_step)


# ---------------------------------------------------------------------------------------------------
# The attention and mask functions
# ---------------------------------------------------------------------------------------------------


def _key_mask(attention_mask: Tensor | None, batch: int, kv_length: int) -> Tensor | None:
    """The [B, Lk] boolean key mask from what the model passes: ours (2D), or a broadcastable
    [B, 1, 1, Lk] padding mask (boolean, or additive with large negatives) built by older code."""
    if attention_mask is None:
        return None
    mask = attention_mask
    if mask.ndim == 4:
        if mask.shape[1] != 1 or mask.shape[2] != 1:
            raise ValueError(
                f"FAVOR+ takes a key-padding mask; got an attention mask of shape {tuple(mask.shape)} "
                "(a full query×key mask cannot be applied in linear attention)"
            )
        mask = mask[:, 0, 0, :]
    if mask.ndim != 2 or mask.shape != (batch, kv_length):
        raise ValueError(
            f"FAVOR+ key mask must be [batch, kv_length] = {(batch, kv_length)}, got {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        mask = mask > torch.finfo(mask.dtype).min / 2 if mask.is_floating_point() else mask.bool()
    return mask


def favor_attention_forward(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """transformers' attention-function contract: q, k, v [B, H, L, d] -> ([B, L, H, d], no weights)."""
    projection = getattr(module, BUFFER, None)
    if projection is None:
        raise RuntimeError(
            f"{type(module).__name__} has no FAVOR+ projection: load the model with "
            "attn_implementation='favor' or convert it with seqstruct.performerize(model)"
        )
    if dropout and module.training:
        warnings.warn(
            "FAVOR+ has no attention-probability matrix to drop out; attention dropout is ignored",
            stacklevel=2,
        )
    is_causal = kwargs.get("is_causal")
    causal = bool(getattr(module, "is_causal", False) if is_causal is None else is_causal)
    causal = causal and query.shape[2] == key.shape[2] and query.shape[2] > 1
    settings_chunk = getattr(module.config, NAME, None) or {}
    # ESM folds the whole 1/√d into its queries (before rotary) and asks for scaling 1: even the
    # norms out again, which lowers the estimator's variance without changing q·k.
    balance = query.shape[-1] ** 0.25 if type(module).__name__ in _QUERY_PRESCALED else 1.0
    out = favor_attention(
        query,
        key,
        value,
        projection,
        key_mask=_key_mask(attention_mask, key.shape[0], key.shape[2]),
        causal=causal,
        scaling=scaling,
        chunk_size=settings_chunk.get("causal_chunk", FavorConfig.causal_chunk),
        balance=balance,
        kernel=settings_chunk.get("kernel", FavorConfig.kernel),
        # Packed rows (transformers' flattening collators pass these): sequences attend within themselves.
        cu_seqlens=kwargs.get("cu_seq_lens_k"),
    )
    return out.transpose(1, 2).contiguous(), None


def favor_mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    q_offset: int = 0,
    kv_offset: int = 0,
    attention_mask: Tensor | None = None,
    **kwargs: Any,
) -> Tensor | None:
    """The [B, Lk] boolean key-padding mask, or None when nothing is padded. Causality is not encoded
    here: the attention function reads it from the module, as sdpa does."""
    if attention_mask is None:
        return None
    mask = attention_mask[:, kv_offset : kv_offset + kv_length].to(torch.bool)
    return None if bool(mask.all()) else mask


# ---------------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------------

_REGISTERED = False
_REGISTER_LOCK = threading.Lock()  # two threads registering at once append each hook once


def _attach_on_build(model: PreTrainedModel) -> None:
    """post_init hook: a model built with "favor" gets its projection buffers (settings defaulted)."""
    if getattr(model.config, "_attn_implementation", None) == NAME:
        if getattr(model.config, NAME, None) is None:
            model.config.favor = dataclasses.asdict(FavorConfig())
        _attach(model, favor_settings(model.config), draw=False)


def _saved_performer(model: PreTrainedModel) -> str | None:
    """A saved Performer (its config carries favor settings) reloads as one unless told otherwise."""
    return NAME if getattr(model.config, NAME, None) is not None else None


def _draw_missing(model: PreTrainedModel, module: nn.Module) -> None:
    """A projection missing from the checkpoint is drawn like any other missing weight."""
    buffer = getattr(module, BUFFER, None)
    if buffer is None or getattr(buffer, "_is_hf_initialized", False) or buffer.device.type == "meta":
        return
    with torch.no_grad():
        buffer.copy_(draw_projection(favor_settings(model.config), buffer.shape[1], module.favor_layer, 0))


def register() -> None:
    """Make attn_implementation="favor" available to every transformers model (idempotent, thread-safe;
    no imports inside the lock). seqstruct.registration calls it once transformers is in use."""
    global _REGISTERED
    with _REGISTER_LOCK:
        if _REGISTERED:
            return
        AttentionInterface.register(NAME, favor_attention_forward)
        AttentionMaskInterface.register(NAME, favor_mask)
        hooks.on_post_init(_attach_on_build)
        hooks.on_default_attention(_saved_performer)
        hooks.on_initialize_weights(_draw_missing)
        _REGISTERED = True
