"""Embeddings from a saved encoder in Python: `encode()`, `encode_representations()`, `load_embedder()`.

Inference always runs in eval mode, in length-sorted batches bounded by a token budget (ESM's recipe), and
returns vectors in the caller's order; a sequence gets the same vector alone or inside a padded batch.
Every pooling of `seqstruct.models.pooling` is accepted by name, or as a module (a trained
layer-attention pooling, or a saved model's pooling and the modules after it); every layer's hidden
states are computed only when the pooling, or a layer asked for, reads them.

Per-residue and per-layer outputs follow ESM's `extract`: `encode_representations` (layers as
`repr_layers`; residue means, <cls> states, residue vectors with the special tokens dropped) and
`encode(..., output_value="token_embeddings")` (sentence-transformers' name: one (L_i, D) array per
sequence, the last layer's residues).

`seqstruct embed` is `seqstruct.models.extract.embed_file`, over `load_embedder`, `tokenize` and
`represent`; the file it writes is `seqstruct.models.embed_outputs`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from seqstruct.data.collate import token_budget_batches
from seqstruct.models.embed_outputs import OutputSpec, member_name, resolve_layers
from seqstruct.models.embed_outputs import save_embeddings as save_embeddings  # callers import it from here
from seqstruct.models.io import resolve_model_path, st_modules
from seqstruct.models.pooling import (
    LAYER_ATTENTION,
    first_token,
    mean_pool,
    needs_hidden_states,
    pooling_module,
    pooling_name,
    special_token_ids,
    token_mask,
)

logger = logging.getLogger(__name__)


def load_encoder(
    path: str | Path, device: str | torch.device | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the encoder body (no MLM head) and tokenizer of a saved model directory, in eval mode."""
    if not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(
            f"{path}: not a model directory (expected config.json, model.safetensors and tokenizer files, "
            "as `seqstruct pretrain` writes them)"
        )
    config = AutoConfig.from_pretrained(path)
    if any(name.endswith("ForMaskedLM") for name in config.architectures or []):
        # Load what was saved and keep its body: AutoModel would build a fresh pooler and report the MLM
        # head's weights as unexpected, warnings that would hide real loading problems.
        model = AutoModelForMaskedLM.from_pretrained(path).base_model
    else:
        model = AutoModel.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return model.eval(), tokenizer


# Sequences handed to the tokenizer at once: its fast (Rust) encodings take ~100 bytes a token until they
# become id lists (8 bytes a token), so thousands of proteins in one call would cost ten times their ids.
_TOKENIZE_AT_ONCE = 256


def tokenize(
    tokenizer: PreTrainedTokenizerBase, sequences: Sequence[str], max_length: int | None
) -> tuple[list[list[int]], list[int]]:
    """Token ids of every sequence, and the positions of those cut: with max_length, the longer ones are
    cut to it (their end token kept: the tokenizer truncates before adding specials)."""
    plain = dict(return_attention_mask=False, return_token_type_ids=False)
    ids: list[list[int]] = []
    cut: list[int] = []
    for start in range(0, len(sequences), _TOKENIZE_AT_ONCE):
        part = list(sequences[start : start + _TOKENIZE_AT_ONCE])
        rows = tokenizer(part, **plain)["input_ids"]
        over = [] if max_length is None else [i for i, row in enumerate(rows) if len(row) > max_length]
        if over:
            short = tokenizer([part[i] for i in over], truncation=True, max_length=max_length, **plain)
            for i, row in zip(over, short["input_ids"], strict=True):
                rows[i] = row
        ids.extend(rows)
        cut.extend(start + i for i in over)
    return ids, cut


def log_truncated(max_length: int | None, cut: int, total: int) -> None:
    if cut:
        logger.warning("max_length=%d truncated %d of %d sequences", max_length, cut, total)


def _pooling(
    pooling: str | nn.Module,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    include_special_tokens: bool,
    seed: int,
) -> nn.Module:
    if not isinstance(pooling, str):
        return pooling
    if pooling in LAYER_ATTENTION:
        logger.warning(
            "%s pooling by name is untrained (seeded with %d): pass a trained module, e.g. from a model "
            "saved by `seqstruct contrastive`, for meaningful embeddings",
            pooling,
            seed,
        )
    config = model.config
    return pooling_module(
        pooling,
        config.hidden_size,
        config.num_hidden_layers,
        special_token_ids(tokenizer),
        include_special_tokens,
        seed,
    )


OUTPUT_VALUES = ("sentence_embedding", "token_embeddings")  # sentence-transformers' names


@torch.inference_mode()
def encode(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    sequences: Sequence[str],
    batch_size: int = 64,
    max_tokens: int = 16384,
    pooling: str | nn.Module = "mean",
    normalize_embeddings: bool = False,
    max_length: int | None = None,
    convert_to_numpy: bool = True,
    show_progress_bar: bool = False,
    include_special_tokens: bool = False,
    seed: int = 0,
    output_value: str = "sentence_embedding",
) -> np.ndarray | torch.Tensor | list[np.ndarray] | list[torch.Tensor]:
    """Embed `sequences` into a (N, D) float32 array, in input order.

    pooling: a name from POOLINGS, or a sentence-transformers module (or nn.Sequential of them) that
    reads features["token_embeddings"], ["attention_mask"], ["input_ids"] and, if it says it needs them,
    ["all_layer_embeddings"], and writes ["sentence_embedding"]. include_special_tokens (for a name): pool
    the <cls>/<eos> ([CLS]/[SEP]) tokens too; False, our protein models' convention, by default. seed:
    the initial weights of a layer-attention pooling given by name (untrained).
    batch_size bounds the sequences in a batch and max_tokens its padded size (rows x longest); an
    over-long sequence is embedded alone. max_length truncates (keeping the end token) and logs how many
    sequences it cut; None embeds every sequence whole, which rotary positions allow.
    output_value "token_embeddings" (sentence-transformers' name): a list of (L_i, D) float32 arrays, the
    last layer's state of every residue, the special tokens dropped (as ESM's extract; sentence-
    transformers keeps them); pooling and normalize_embeddings do not apply. Other layers, residue means
    and <cls> states: `encode_representations`.
    """
    if output_value not in OUTPUT_VALUES:
        raise ValueError(f"output_value {output_value!r}: expected one of {list(OUTPUT_VALUES)}")
    if output_value == "token_embeddings":
        if normalize_embeddings or include_special_tokens:
            raise ValueError("token_embeddings are residue states as computed, special tokens dropped")
        last = model.config.num_hidden_layers
        rows = encode_representations(
            model,
            tokenizer,
            sequences,
            (last,),
            ("per_residue",),
            batch_size,
            max_tokens,
            max_length,
            show_progress_bar=show_progress_bar,
        ).per_residue[last]
        return rows if convert_to_numpy else [torch.from_numpy(row) for row in rows]
    pool = _pooling(pooling, model, tokenizer, include_special_tokens, seed)
    input_ids, cut = tokenize(tokenizer, sequences, max_length)
    log_truncated(max_length, len(cut), len(sequences))
    out = _encode_tokens(model, tokenizer, pool, input_ids, batch_size, max_tokens, show_progress_bar)
    if normalize_embeddings:
        out = torch.nn.functional.normalize(out, dim=-1)
    return out.numpy() if convert_to_numpy else out


def _forward(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    input_ids: list[list[int]],
    batch_size: int,
    max_tokens: int,
    hidden_states: bool,
    show_progress_bar: bool,
) -> Iterator[tuple[list[int], dict[str, Any]]]:
    """(positions in `input_ids`, features) of each length-sorted token-budget batch: the features dict
    sentence-transformers modules read, every layer's states ("all_layer_embeddings") if `hidden_states`."""
    model.eval()  # also when a caller hands over a model left in training mode
    device = next(model.parameters()).device
    batches = token_budget_batches([len(ids) for ids in input_ids], max_tokens, batch_size)
    for batch in tqdm(batches, desc="embedding", unit="batch", disable=not show_progress_bar):
        padded = tokenizer.pad([{"input_ids": input_ids[i]} for i in batch], return_tensors="pt")
        ids, attention_mask = padded["input_ids"].to(device), padded["attention_mask"].to(device)
        output = model(input_ids=ids, attention_mask=attention_mask, output_hidden_states=hidden_states)
        # Pool in float32 whatever precision the encoder ran in (bf16 autocast).
        features = {
            "input_ids": ids,
            "attention_mask": attention_mask,
            "token_embeddings": output.last_hidden_state.float(),
        }
        if hidden_states:
            features["all_layer_embeddings"] = tuple(h.float() for h in output.hidden_states)
        yield batch, features


@torch.inference_mode()
def _encode_tokens(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pool: nn.Module,
    input_ids: list[list[int]],
    batch_size: int,
    max_tokens: int,
    show_progress_bar: bool,
) -> torch.Tensor:
    """(N, D) float32 on the CPU: `input_ids` in length-sorted token-budget batches, in their order."""
    pool.to(next(model.parameters()).device).eval()
    hidden_states = needs_hidden_states(pool)
    out: torch.Tensor | None = None
    for batch, features in _forward(
        model, tokenizer, input_ids, batch_size, max_tokens, hidden_states, show_progress_bar
    ):
        pooled = pool(features)["sentence_embedding"].float().cpu()  # (B, D)
        if out is None:
            out = torch.empty((len(input_ids), pooled.shape[-1]), dtype=torch.float32)
        out[batch] = pooled
    if out is None:  # no sequences
        out = torch.empty((0, model.config.hidden_size), dtype=torch.float32)
    return out


# ---------------------------------------------------------------------------------------------------
# Per-layer and per-residue representations (ESM's repr_layers)
# ---------------------------------------------------------------------------------------------------


@torch.inference_mode()
def represent(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pool: nn.Module | None,
    input_ids: list[list[int]],
    cut: list[int],
    kinds: tuple[str, ...],
    layers: tuple[int, ...],
    residue_dtype: str,
    batch_size: int,
    max_tokens: int,
    show_progress_bar: bool = False,
) -> dict[str, np.ndarray]:
    """The arrays of `input_ids` in the file's layout (`embed_outputs`), in their order, from one pass:
    `embeddings` (N, D') pooled by `pool` if given; for each of `kinds` and resolved `layers`, mean_L and
    bos_L (N, D), per_residue_L (R, D) records one after another; `lengths` (N,) residues, `truncated`."""
    specials = special_token_ids(tokenizer)
    special = set(specials)
    lengths = np.array([sum(t not in special for t in row) for row in input_ids], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)  # (N+1,)
    n, dim = len(input_ids), model.config.hidden_size
    truncated = np.zeros(n, dtype=bool)
    truncated[cut] = True
    arrays: dict[str, np.ndarray] = {"lengths": lengths, "truncated": truncated}
    for kind in kinds:
        for layer in layers:
            rows, dtype = (int(offsets[-1]), residue_dtype) if kind == "per_residue" else (n, "float32")
            arrays[member_name(kind, layer)] = np.zeros((rows, dim), dtype=dtype)
    # Every layer's states only when read: the pooling's, or a layer other than the last.
    last = model.config.num_hidden_layers
    hidden_states = (pool is not None and needs_hidden_states(pool)) or (bool(kinds) and layers != (last,))
    if pool is not None:
        pool.to(next(model.parameters()).device).eval()
    pooled: np.ndarray | None = None
    for batch, features in _forward(
        model, tokenizer, input_ids, batch_size, max_tokens, hidden_states, show_progress_bar
    ):
        if pool is not None:
            vectors = pool(features)["sentence_embedding"].float().cpu().numpy()  # (B, D')
            if pooled is None:
                pooled = np.empty((n, vectors.shape[-1]), dtype=np.float32)
            pooled[batch] = vectors
        if kinds:
            _scatter_layers(arrays, batch, features, specials, kinds, layers, offsets)
    if pool is not None:
        arrays["embeddings"] = pooled if pooled is not None else np.empty((0, dim), dtype=np.float32)
    return arrays


def _scatter_layers(
    arrays: dict[str, np.ndarray],
    batch: list[int],
    features: dict[str, Any],
    specials: list[int],
    kinds: tuple[str, ...],
    layers: tuple[int, ...],
    offsets: np.ndarray,
) -> None:
    """Write one batch's representations into `arrays` at its records' rows."""
    attention_mask = features["attention_mask"]
    residues = token_mask(features["input_ids"], attention_mask, specials, include_special_tokens=False)
    states = features.get("all_layer_embeddings")  # None: only the last layer was asked for
    for layer in layers:
        hidden = features["token_embeddings"] if states is None else states[layer]  # (B, T, D)
        if "mean" in kinds:
            arrays[member_name("mean", layer)][batch] = mean_pool(hidden, residues).cpu().numpy()
        if "bos" in kinds:
            arrays[member_name("bos", layer)][batch] = first_token(hidden, attention_mask).cpu().numpy()
        if "per_residue" in kinds:
            rows = hidden[residues].cpu().numpy()  # (residues of the batch, D), row after row
            target, start = arrays[member_name("per_residue", layer)], 0
            for i in batch:
                stop = start + int(offsets[i + 1] - offsets[i])
                target[offsets[i] : offsets[i + 1]] = rows[start:stop]
                start = stop


@dataclass
class Representations:
    """What `encode_representations` returns, keyed by layer as ESM's model returns `representations`:
    indices of hidden_states (0 the embedding output, num_hidden_layers the last)."""

    layers: tuple[int, ...]
    mean: dict[int, np.ndarray]  # (N, D) residue means
    bos: dict[int, np.ndarray]  # (N, D) the first token's (<cls>) states
    per_residue: dict[int, list[np.ndarray]]  # N arrays (L_i, D), special tokens dropped
    lengths: np.ndarray  # (N,) residues embedded per sequence
    truncated: np.ndarray  # (N,) bool: cut by max_length


@torch.inference_mode()
def encode_representations(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    sequences: Sequence[str],
    layers: Sequence[int] = (-1,),
    include: Sequence[str] = ("mean",),
    batch_size: int = 64,
    max_tokens: int = 16384,
    max_length: int | None = None,
    residue_dtype: str = "float32",
    show_progress_bar: bool = False,
) -> Representations:
    """ESM's `extract` in Python: for each of `layers` (ESM's repr_layers: 0 the embedding output, -1
    the last), what `include` names of mean, per_residue and bos, batched as `encode` batches (the same
    vectors alone or in a padded batch). Pooled sentence embeddings are `encode`'s."""
    spec = OutputSpec(tuple(include), tuple(layers), residue_dtype)
    if "pooled" in spec.include:
        raise ValueError("include: pooled embeddings are encode()'s; here mean, per_residue or bos")
    resolved = resolve_layers(spec.layers, model.config.num_hidden_layers)
    input_ids, cut = tokenize(tokenizer, sequences, max_length)
    log_truncated(max_length, len(cut), len(sequences))
    arrays = represent(
        model,
        tokenizer,
        None,
        input_ids,
        cut,
        spec.per_layer,
        resolved,
        residue_dtype,
        batch_size,
        max_tokens,
        show_progress_bar,
    )
    bounds = np.cumsum(arrays["lengths"])[:-1]  # where each record's rows end, but the last
    return Representations(
        layers=resolved,
        mean={layer: arrays[member_name("mean", layer)] for layer in resolved if "mean" in spec.include},
        bos={layer: arrays[member_name("bos", layer)] for layer in resolved if "bos" in spec.include},
        per_residue={
            layer: np.split(arrays[member_name("per_residue", layer)], bounds) if len(sequences) else []
            for layer in resolved
            if "per_residue" in spec.include
        },
        lengths=arrays["lengths"],
        truncated=arrays["truncated"],
    )


# ---------------------------------------------------------------------------------------------------
# A model directory, ready to embed
# ---------------------------------------------------------------------------------------------------


@dataclass
class Embedder:
    """What `seqstruct embed` runs: an encoder body, its tokenizer, and the modules after it."""

    model: PreTrainedModel  # encoder body, eval mode
    tokenizer: PreTrainedTokenizerBase
    head: nn.Module  # pooling, then any modules the source model has after it (its Normalize)
    pooling: str  # the pooling's name, written beside the embeddings
    max_length: int | None  # default truncation: a sentence-transformers model's max_seq_length

    def encode(self, sequences: Sequence[str], **kwargs) -> np.ndarray | torch.Tensor:
        kwargs.setdefault("max_length", self.max_length)
        return encode(self.model, self.tokenizer, sequences, pooling=self.head, **kwargs)


def load_embedder(
    model_dir: str | Path, pooling: str | None = None, device: str | None = None, seed: int = 0
) -> Embedder:
    """The encoder in `model_dir` (or `minilm`) with the pooling `seqstruct embed` uses.

    A plain HF directory (`seqstruct pretrain`'s): `pooling` (default mean) over residues, <cls>/<eos>
    left out. A sentence-transformers directory (MiniLM, or one seqstruct saved): its own pooling and
    what follows it (Normalize), so the vectors are what `SentenceTransformer(dir).encode` gives; a
    `pooling` naming another one replaces it, following the model's token convention (MiniLM's mean
    pools [CLS] and [SEP] too), and inputs are cut to the model's max_seq_length as there.
    """
    path = resolve_model_path(model_dir)
    if (path / "modules.json").is_file():
        from seqstruct.models.sentence import sentence_model

        st = sentence_model(path, pooling=pooling, seed=seed, device=device)
        head = nn.Sequential(*(st[i] for i in range(1, len(st))))
        name = next((n for n in map(pooling_name, head) if n is not None), None)
        return Embedder(st[0].auto_model.eval(), st[0].tokenizer, head, name or "custom", st.max_seq_length)
    model, tokenizer = load_encoder(path, device)
    name = pooling or "mean"
    head = _pooling(name, model, tokenizer, include_special_tokens=False, seed=seed)
    return Embedder(model, tokenizer, head, name, None)


def saved_pooling(model_dir: str | Path) -> nn.Module | None:
    """The pooling module a sentence-transformers directory saved (ours or the library's, with its
    weights); None for a plain HF directory or one without a pooling module."""
    from seqstruct.models.sentence import allowed_module_class, pooling_index

    path = resolve_model_path(model_dir)
    modules = st_modules(path)
    index = pooling_index(modules) if modules else None
    if modules is None or index is None:
        return None
    # The same allowlist as load_sentence_model: sentence-transformers' classes and seqstruct's only.
    module_class = allowed_module_class(modules[index]["type"], path / "modules.json")
    return module_class.load(str(path), subfolder=modules[index]["path"], local_files_only=True)


def load_pooling(
    model_dir: str | Path,
    pooling: str | None,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    seed: int = 0,
) -> nn.Module:
    """The pooling module for `pooling` over the encoder of `model_dir`: the directory's saved one when
    it has that name (or `pooling` is None), trained weights included; else a fresh one that follows the
    directory's token convention (`seqstruct.models.sentence.includes_special_tokens`)."""
    from seqstruct.models.sentence import includes_special_tokens

    saved = saved_pooling(model_dir)
    if saved is not None and pooling in (None, pooling_name(saved)):
        return saved
    return _pooling(pooling or "mean", model, tokenizer, includes_special_tokens(saved), seed)
