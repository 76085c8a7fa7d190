"""Embeddings from a saved encoder: `encode()` in Python, `embed_file()` behind `seqstruct embed`.

Inference always runs in eval mode, in length-sorted batches bounded by a token budget (ESM's recipe), and
returns vectors in the caller's order; a sequence gets the same vector alone or inside a padded batch.
Every pooling of `seqstruct.models.pooling` is accepted by name, or as a module (a trained
layer-attention pooling, or a saved model's pooling and the modules after it); every layer's hidden
states are computed only when the pooling reads them.

Inputs are read by `seqstruct.data.inputs.read_inputs` (FASTA, .txt, .jsonl).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
from seqstruct.data.inputs import read_inputs
from seqstruct.io import atomic_path
from seqstruct.models.io import resolve_model_path, st_modules
from seqstruct.models.pooling import (
    LAYER_ATTENTION,
    needs_hidden_states,
    pooling_module,
    pooling_name,
    special_token_ids,
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


def _tokenize(
    tokenizer: PreTrainedTokenizerBase, sequences: Sequence[str], max_length: int | None
) -> list[list[int]]:
    """Token ids of every sequence; with max_length, the longer ones are cut to it (their end token kept:
    the tokenizer truncates before adding specials) and how many is logged."""
    plain = dict(return_attention_mask=False, return_token_type_ids=False)
    ids = tokenizer(list(sequences), **plain)["input_ids"]
    if max_length is None:
        return ids
    over = [i for i, row in enumerate(ids) if len(row) > max_length]
    if over:
        logger.warning("max_length=%d truncated %d of %d sequences", max_length, len(over), len(sequences))
        cut = tokenizer([sequences[i] for i in over], truncation=True, max_length=max_length, **plain)
        for i, row in zip(over, cut["input_ids"], strict=True):
            ids[i] = row
    return ids


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
) -> np.ndarray | torch.Tensor:
    """Embed `sequences` into a (N, D) float32 array, in input order.

    pooling: a name from POOLINGS, or a sentence-transformers module (or nn.Sequential of them) that
    reads features["token_embeddings"], ["attention_mask"], ["input_ids"] and, if it says it needs them,
    ["all_layer_embeddings"], and writes ["sentence_embedding"]. include_special_tokens (for a name): pool
    the <cls>/<eos> ([CLS]/[SEP]) tokens too; False, our protein models' convention, by default. seed:
    the initial weights of a layer-attention pooling given by name (untrained).
    batch_size bounds the sequences in a batch and max_tokens its padded size (rows x longest); an
    over-long sequence is embedded alone. max_length truncates (keeping the end token) and logs how many
    sequences it cut; None embeds every sequence whole, which rotary positions allow.
    """
    pool = _pooling(pooling, model, tokenizer, include_special_tokens, seed)
    model.eval()  # also when a caller hands over a model left in training mode
    device = next(model.parameters()).device
    pool.to(device).eval()
    hidden_states = needs_hidden_states(pool)
    input_ids = _tokenize(tokenizer, sequences, max_length)
    batches = token_budget_batches([len(ids) for ids in input_ids], max_tokens, batch_size)
    out: torch.Tensor | None = None
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
        pooled = pool(features)["sentence_embedding"].float().cpu()  # (B, D)
        if out is None:
            out = torch.empty((len(sequences), pooled.shape[-1]), dtype=torch.float32)
        out[batch] = pooled
    if out is None:  # no sequences
        out = torch.empty((0, model.config.hidden_size), dtype=torch.float32)
    if normalize_embeddings:
        out = torch.nn.functional.normalize(out, dim=-1)
    return out.numpy() if convert_to_numpy else out


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


def save_embeddings(path: str | Path, ids: Sequence[str], embeddings: np.ndarray, **metadata: str) -> None:
    """Write ids and vectors to a .npz readable with `np.load(path)` (no pickle: ids are a unicode array)."""
    if len(ids) != len(embeddings):
        raise ValueError(f"{len(ids)} ids for {len(embeddings)} embeddings")
    extra = {key: np.array(value) for key, value in metadata.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, ids=np.array(ids, dtype=str), embeddings=embeddings.astype(np.float32), **extra)


def _embed(
    model_dir: str | Path,
    inputs: str | Path,
    pooling: str | None,
    batch_size: int,
    max_tokens: int,
    max_length: int | None,
    normalize_embeddings: bool,
) -> tuple[list[str], np.ndarray, Embedder]:
    ids, sequences = read_inputs(inputs)  # before the model loads: a bad input fails fast
    embedder = load_embedder(model_dir, pooling)
    vectors = embedder.encode(
        sequences,
        batch_size=batch_size,
        max_tokens=max_tokens,
        normalize_embeddings=normalize_embeddings,
        show_progress_bar=True,
        **({} if max_length is None else {"max_length": max_length}),
    )
    return ids, vectors, embedder


def embed_file(
    model_dir: str | Path,
    inputs: str | Path,
    output: str | Path,
    pooling: str | None = None,
    batch_size: int = 64,
    max_tokens: int = 16384,
    max_length: int | None = None,
    normalize_embeddings: bool = False,
) -> int:
    """Embed every record of an input file into `output` (.npz with `ids`, `embeddings`, and the
    `pooling` and `model` used), written atomically; returns N."""
    ids, vectors, embedder = _embed(
        model_dir, inputs, pooling, batch_size, max_tokens, max_length, normalize_embeddings
    )
    save_embeddings(output, ids, vectors, pooling=embedder.pooling, model=str(model_dir))
    return len(ids)
