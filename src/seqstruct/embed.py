"""Sequence embeddings from a saved encoder: `encode()` in Python, `embed_fasta()` behind `seqstruct embed`.

Inference always runs in eval mode, in length-sorted batches bounded by a token budget (ESM's recipe), and
returns vectors in the caller's order; a sequence gets the same vector alone or inside a padded batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
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
from seqstruct.data.fasta import read_fasta
from seqstruct.io import atomic_path
from seqstruct.models.pooling import get_pooling

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


@torch.inference_mode()
def encode(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    sequences: Sequence[str],
    batch_size: int = 64,
    max_tokens: int = 16384,
    pooling: str = "mean",
    normalize_embeddings: bool = False,
    max_length: int | None = None,
    convert_to_numpy: bool = True,
    show_progress_bar: bool = False,
) -> np.ndarray | torch.Tensor:
    """Embed `sequences` into a (N, hidden_size) array, in input order.

    batch_size bounds the sequences in a batch and max_tokens its padded size (rows x longest); an
    over-long sequence is embedded alone. max_length truncates (keeping <eos>) and logs how many
    sequences it cut; None embeds every sequence whole, which rotary positions allow.
    """
    pool = get_pooling(pooling)
    model.eval()  # also when a caller hands over a model left in training mode
    device = next(model.parameters()).device
    encoded = tokenizer(
        list(sequences),
        truncation=max_length is not None,
        max_length=max_length,
        return_special_tokens_mask=True,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    if max_length is not None:
        cut = sum(len(s) + 2 > max_length for s in sequences)
        if cut:
            logger.warning("max_length=%d truncated %d of %d sequences", max_length, cut, len(sequences))
    lengths = [len(ids) for ids in encoded["input_ids"]]
    batches = token_budget_batches(lengths, max_tokens, batch_size)
    out = torch.empty((len(sequences), model.config.hidden_size), dtype=torch.float32)
    for batch in tqdm(batches, desc="embedding", unit="batch", disable=not show_progress_bar):
        features = [
            {"input_ids": encoded["input_ids"][i], "special_tokens_mask": encoded["special_tokens_mask"][i]}
            for i in batch
        ]
        padded = tokenizer.pad(features, return_tensors="pt")
        attention_mask = padded["attention_mask"].to(device)
        hidden = model(
            input_ids=padded["input_ids"].to(device), attention_mask=attention_mask
        ).last_hidden_state
        residues = attention_mask.bool() & ~padded["special_tokens_mask"].to(device).bool()  # (B, L)
        out[batch] = pool(hidden.float(), residues).cpu()
    if normalize_embeddings:
        out = torch.nn.functional.normalize(out, dim=-1)
    return out.numpy() if convert_to_numpy else out


def save_embeddings(path: str | Path, ids: Sequence[str], embeddings: np.ndarray, **metadata: str) -> None:
    """Write ids and vectors to a .npz readable with `np.load(path)` (no pickle: ids are a unicode array)."""
    if len(ids) != len(embeddings):
        raise ValueError(f"{len(ids)} ids for {len(embeddings)} embeddings")
    extra = {key: np.array(value) for key, value in metadata.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, ids=np.array(ids, dtype=str), embeddings=embeddings.astype(np.float32), **extra)


def embed_records(
    model_dir: str | Path,
    fasta: str | Path,
    pooling: str = "mean",
    batch_size: int = 64,
    max_tokens: int = 16384,
    max_length: int | None = None,
    normalize_embeddings: bool = False,
) -> tuple[list[str], np.ndarray]:
    """(FASTA ids, embeddings [N, D]) of every protein of a FASTA file, embedded by a saved encoder."""
    records = read_fasta(fasta)
    model, tokenizer = load_encoder(model_dir)
    vectors = encode(
        model,
        tokenizer,
        [r.sequence for r in records],
        batch_size=batch_size,
        max_tokens=max_tokens,
        pooling=pooling,
        normalize_embeddings=normalize_embeddings,
        max_length=max_length,
        show_progress_bar=True,
    )
    return [r.id for r in records], vectors


def embed_fasta(
    model_dir: str | Path,
    fasta: str | Path,
    output: str | Path,
    pooling: str = "mean",
    batch_size: int = 64,
    max_tokens: int = 16384,
    max_length: int | None = None,
    normalize_embeddings: bool = False,
) -> int:
    """Embed every protein of a FASTA file into `output` (.npz with `ids` and `embeddings`); returns N."""
    ids, vectors = embed_records(
        model_dir, fasta, pooling, batch_size, max_tokens, max_length, normalize_embeddings
    )
    save_embeddings(output, ids, vectors, pooling=pooling, model=str(model_dir))
    return len(ids)
