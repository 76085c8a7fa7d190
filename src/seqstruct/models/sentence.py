"""Sentence-transformers models over any encoder seqstruct loads: our protein models, MiniLM, FAVOR+.

`sentence_model(...)` puts sentence-transformers' `Transformer` module over a model directory and a
pooling module (`seqstruct.models.pooling.pooling_module`) after it; what follows the source model's own
pooling (its `Normalize`, for MiniLM) is kept. `model.save(dir)` writes the usual layout (the encoder's
HF files at the top, one folder per module, modules.json).

Loading a saved directory:
- Plain `SentenceTransformer(dir)` loads a seqstruct model whose pooling sentence-transformers' own
  `Pooling` computes (cls; mean or max with the special tokens included, MiniLM's convention):
  seqstruct saves that module then, so the directory names no class outside the library.
- For seqstruct's own poolings (mean or max over residues only, <cls>/<eos> left out: our protein
  convention; first-last; layer-attention[-paper][-1q]) use `seqstruct.load_sentence_model(dir)`. Since 6.0
  sentence-transformers imports a class outside `sentence_transformers.*` only with
  trust_remote_code=True, and plain `SentenceTransformer(dir)` refuses such a directory. `load_sentence_model`
  builds only sentence-transformers' classes and seqstruct's own (`seqstruct.models.pooling
  .SENTENCE_MODULES`, already imported), each through its public `load`, and refuses any other type a
  modules.json names; it never passes trust_remote_code. `SentenceTransformer(dir, trust_remote_code=True)`
  works too, at the user's own choice: for a directory as seqstruct wrote it, the library then imports
  seqstruct's installed classes, but the flag lets the directory's files choose any code.
- sentence-transformers' trainer reloads its checkpoints with the in-memory model's own module classes,
  so resuming training needs neither.

Where the encoder comes from:
- a `seqstruct pretrain` directory (an *ForMaskedLM checkpoint): its body, loaded as the base model. The
  MLM head is left behind on purpose, and the base model's pooler (absent from an MLM checkpoint, used
  by no pooling here) is drawn from `seed`, so that the saved sentence model reloads with nothing
  missing and no load warnings.
- a sentence-transformers directory (MiniLM, or one seqstruct saved), loaded by `load_sentence_model`.
  With no pooling asked for, or the pooling it already has, it is kept as saved: trained
  layer-attention weights included.
- a model whose config carries FAVOR+ settings (`config.favor`) loads with FAVOR+ attention (seqstruct's
  transformers hook), unless `attn_implementation` says otherwise.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from seqstruct.models.io import body_of_mlm_checkpoint, resolve_model_path, st_modules
from seqstruct.models.pooling import (
    LAYER_ATTENTION,
    NEEDS_HIDDEN_STATES,
    POOLINGS,
    SENTENCE_MODULES,
    pooling_module,
    pooling_name,
    special_token_ids,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------
# What a model directory holds
# ---------------------------------------------------------------------------------------------------


def is_pooling_type(name: str) -> bool:
    """Whether a module type (a class name, or a modules.json dotted path) names a pooling: ours and
    sentence-transformers' all end in "Pooling"."""
    return name.endswith("Pooling")


def pooling_index(modules: list[dict[str, Any]]) -> int | None:
    """Index in modules.json of the pooling module (the first whose type names a pooling)."""
    for index, entry in enumerate(modules):
        if is_pooling_type(str(entry.get("type", ""))):
            return index
    return None


def includes_special_tokens(module: nn.Module | None) -> bool:
    """The token convention of a source model's pooling: its own setting for ours; True for
    sentence-transformers' Pooling in a mode that reads tokens (mean, max: it pools every attended
    token); False (ESM's, seqstruct's default) without one, or for a Pooling in cls mode, which records
    no convention (seqstruct saves cls pooling as that for either)."""
    if module is None:
        return False
    own = getattr(module, "include_special_tokens", None)
    if isinstance(own, bool):
        return own
    return type(module).__name__ == "Pooling" and getattr(module, "pooling_mode", None) != "cls"


def base_pooling(module: nn.Module | None) -> str:
    """The last-layer pooling (cls, mean or max) a source model's pooling module computes, which a
    residual layer-attention built over it starts as: that module's own name, a residual layer
    attention's base; mean (MiniLM's, ours, `load_pooling`'s default) for anything else or none."""
    name = pooling_name(module) if module is not None else None
    if name in ("cls", "mean", "max"):
        return name
    base = getattr(module, "base", None) if getattr(module, "form", None) == "residual" else None
    return base if isinstance(base, str) else "mean"


# ---------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------


def allowed_module_class(class_ref: str, source: str | Path) -> type[nn.Module]:
    """The module class a modules.json `type` names, if it is sentence-transformers' own
    (`sentence_transformers.*`) or seqstruct's (`SENTENCE_MODULES`); nothing else is imported."""
    from sentence_transformers.util import import_from_string

    if class_ref in SENTENCE_MODULES:
        return SENTENCE_MODULES[class_ref]
    if class_ref.startswith("sentence_transformers."):
        module_class = import_from_string(class_ref)
        if isinstance(module_class, type) and issubclass(module_class, nn.Module):
            return module_class
    raise ValueError(
        f"{source}: module type {class_ref!r} is neither sentence-transformers' (sentence_transformers.*) "
        f"nor seqstruct's ({', '.join(SENTENCE_MODULES)}); seqstruct loads no other code. Load this "
        "directory with SentenceTransformer(dir, trust_remote_code=True) if you trust its files."
    )


def _module_entries(file: Path) -> list[dict[str, Any]]:
    """The entries of a modules.json, each checked for a name, a type and a path inside the directory."""
    try:
        entries = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}: not JSON ({err.msg})") from None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{file}: expected a non-empty list of modules")
    for entry in entries:
        fields = ("name", "type", "path")
        if not isinstance(entry, dict) or not all(isinstance(entry.get(f), str) for f in fields):
            raise ValueError(
                f"{file}: expected each module as {{'name', 'type', 'path'}} strings; got {entry!r}"
            )
        folder = Path(entry["path"])
        if folder.is_absolute() or ".." in folder.parts:
            raise ValueError(f"{file}: module path {entry['path']!r} leaves the model directory")
    return entries


def _model_settings(path: Path) -> dict[str, Any]:
    """The SentenceTransformer settings config_sentence_transformers.json keeps (prompts, similarity)."""
    file = path / "config_sentence_transformers.json"
    if not file.is_file():
        return {}
    config = json.loads(file.read_text(encoding="utf-8"))
    model_type = config.get("model_type", "SentenceTransformer")
    if model_type != "SentenceTransformer":
        raise ValueError(f"{file}: model_type {model_type!r}; expected a SentenceTransformer")
    keys = ("prompts", "default_prompt_name", "similarity_fn_name", "truncate_dim")
    return {key: config[key] for key in keys if config.get(key) is not None}


def load_sentence_model(
    path: str | Path,
    device: str | None = None,
    *,
    model_kwargs: dict[str, Any] | None = None,
    config_kwargs: dict[str, Any] | None = None,
) -> SentenceTransformer:
    """A SentenceTransformer saved in `path` (a directory, or `minilm`), seqstruct's poolings included.

    Reads modules.json, refuses any module type that is neither sentence-transformers' nor seqstruct's
    (`allowed_module_class`; every type is checked before anything loads), builds each module with its
    class's public `load` from the local files, and assembles them in order with the saved prompts and
    similarity function. model_kwargs / config_kwargs go to the Transformer module as in
    `SentenceTransformer(dir, ...)` (e.g. attn_implementation, output_hidden_states).
    """
    from sentence_transformers import SentenceTransformer

    path = resolve_model_path(path)
    file = path / "modules.json"
    if not file.is_file():
        raise FileNotFoundError(
            f"{file}: no such file; expected a sentence-transformers directory (as `model.save` writes it)"
        )
    entries = _module_entries(file)
    classes = [allowed_module_class(entry["type"], file) for entry in entries]
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    for entry, module_class in zip(entries, classes, strict=True):
        modules[entry["name"]] = module_class.load(
            str(path),
            subfolder=entry["path"],
            local_files_only=True,
            model_kwargs=model_kwargs,
            config_kwargs=config_kwargs,
        )
    model = SentenceTransformer(modules=modules, device=device, **_model_settings(path))
    # Forward keyword arguments routed per module, as the library's own loader keeps them.
    model.module_kwargs = OrderedDict((entry["name"], entry.get("kwargs", [])) for entry in entries)
    return model


def transformer_module(
    path: str | Path,
    output_hidden_states: bool,
    attn_implementation: str | None = None,
    seed: int = 0,
) -> nn.Module:
    """sentence-transformers' Transformer module over the HF files in `path`; every layer's hidden states
    are output only when asked (they cost memory)."""
    from sentence_transformers.base.modules import Transformer

    path = Path(path)
    model_kwargs = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    # Weights missing from the checkpoint (an MLM checkpoint's pooler) are drawn from `seed`, on a forked
    # RNG so the caller's stream is untouched.
    with torch.random.fork_rng(devices=[]), body_of_mlm_checkpoint(path):
        torch.manual_seed(seed)
        module = Transformer(
            str(path),
            model_kwargs=model_kwargs,
            config_kwargs={"output_hidden_states": output_hidden_states},
        )
    return module


def sentence_model(
    model: str | Path,
    pooling: str | None = None,
    max_length: int | None = None,
    attn_implementation: str | None = None,
    seed: int = 0,
    device: str | None = None,
    *,
    include_special_tokens: bool | None = None,
) -> SentenceTransformer:
    """A SentenceTransformer: the encoder in `model` (a directory or `minilm`), then pooling `pooling`.

    pooling: one of POOLINGS; None keeps a sentence-transformers directory's own pooling (mean for a
    plain HF directory). A pooling with weights (layer-attention) starts untrained, from `seed`, unless
    the directory already holds one of that name; the residual `layer-attention[-1q]` then starts as the
    directory's own pooling (`base_pooling`: MiniLM's mean; mean for a plain HF directory). max_length: tokens per input (default: the model's
    own limit). include_special_tokens: whether mean/max/first-last and the layer means pool the
    <cls>/<eos> ([CLS]/[SEP]) tokens; None follows the source (see `includes_special_tokens`).
    """
    from sentence_transformers import SentenceTransformer

    if pooling is not None and pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; expected one of {list(POOLINGS)}")
    path = resolve_model_path(model)
    modules = st_modules(path)
    model_kwargs = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
    if modules is not None:
        if modules[0].get("path", "") != "":
            raise ValueError(
                f"{path}/modules.json: the Transformer module must be at the top level (path '')"
            )
        if pooling is None:
            return _finish(load_sentence_model(path, device, model_kwargs=model_kwargs), max_length)
        index = pooling_index(modules)
        needs = pooling in NEEDS_HIDDEN_STATES
        loaded = load_sentence_model(
            path, device, model_kwargs=model_kwargs, config_kwargs={"output_hidden_states": needs}
        )
        saved = loaded[index] if index is not None else None
        if (
            saved is not None
            and pooling_name(saved) == pooling
            and (
                include_special_tokens is None
                or pooling == "cls"  # the first token, whichever token set
                or include_special_tokens == includes_special_tokens(saved)
            )
        ):
            return _finish(loaded, max_length)
        include = includes_special_tokens(saved) if include_special_tokens is None else include_special_tokens
        base = base_pooling(saved)
        transformer = loaded[0]
        after = [loaded[i] for i in range(index + 1 if index is not None else 1, len(loaded))]
    else:
        pooling = pooling or "mean"
        transformer = transformer_module(path, pooling in NEEDS_HIDDEN_STATES, attn_implementation, seed)
        include = bool(include_special_tokens)
        base = "mean"
        after = []
    config = transformer.auto_model.config
    pool = pooling_module(
        pooling,
        config.hidden_size,
        config.num_hidden_layers,
        special_token_ids(transformer.tokenizer),
        include,
        seed,
        base=base,
    )
    if pooling in LAYER_ATTENTION:
        logger.info("%s pooling starts untrained (seed %d, base %s)", pooling, seed, base)
    built = SentenceTransformer(modules=[transformer, pool, *after], device=device)
    return _finish(built, max_length)


def _finish(model: SentenceTransformer, max_length: int | None) -> SentenceTransformer:
    if max_length is not None:
        model.max_seq_length = max_length
    ours = any(getattr(model[i], "needs_hidden_states", False) for i in range(1, len(model)))
    if ours and not getattr(model[0].auto_model.config, "output_hidden_states", False):
        raise ValueError(
            "the pooling reads every layer's hidden states but the encoder does not output them; "
            "build the model with seqstruct.models.sentence.sentence_model"
        )
    return model
