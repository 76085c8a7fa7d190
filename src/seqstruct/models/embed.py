"""Embeddings from a saved encoder: `encode()` in Python, `embed_file()` behind `seqstruct embed`.

Inference always runs in eval mode, in length-sorted batches bounded by a token budget (ESM's recipe), and
returns vectors in the caller's order; a sequence gets the same vector alone or inside a padded batch.
Every pooling of `seqstruct.models.pooling` is accepted by name, or as a module (a trained
layer-attention pooling, or a saved model's pooling and the modules after it); every layer's hidden
states are computed only when the pooling reads them.

`embed_file` streams: the output path is checked first, the input is read once to check every record and
count them (before the model loads), then read again in chunks, each tokenised, embedded and written at
once into the `.npz` (`_write_npz`), so memory stays that of one chunk however many records there are.
Inputs are read by `seqstruct.data.inputs.iter_inputs` (FASTA, .txt, .jsonl).
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
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
from seqstruct.data.inputs import iter_inputs
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


# Sequences handed to the tokenizer at once: its fast (Rust) encodings take ~100 bytes a token until they
# become id lists (8 bytes a token), so thousands of proteins in one call would cost ten times their ids.
_TOKENIZE_AT_ONCE = 256


def _tokenize(
    tokenizer: PreTrainedTokenizerBase, sequences: Sequence[str], max_length: int | None
) -> tuple[list[list[int]], int]:
    """Token ids of every sequence, and how many were cut: with max_length, the longer ones are cut to it
    (their end token kept: the tokenizer truncates before adding specials)."""
    plain = dict(return_attention_mask=False, return_token_type_ids=False)
    ids: list[list[int]] = []
    cut = 0
    for start in range(0, len(sequences), _TOKENIZE_AT_ONCE):
        part = list(sequences[start : start + _TOKENIZE_AT_ONCE])
        rows = tokenizer(part, **plain)["input_ids"]
        over = [] if max_length is None else [i for i, row in enumerate(rows) if len(row) > max_length]
        if over:
            short = tokenizer([part[i] for i in over], truncation=True, max_length=max_length, **plain)
            for i, row in zip(over, short["input_ids"], strict=True):
                rows[i] = row
        ids.extend(rows)
        cut += len(over)
    return ids, cut


def _log_truncated(max_length: int | None, cut: int, total: int) -> None:
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
    input_ids, cut = _tokenize(tokenizer, sequences, max_length)
    _log_truncated(max_length, cut, len(sequences))
    out = _encode_tokens(model, tokenizer, pool, input_ids, batch_size, max_tokens, show_progress_bar)
    if normalize_embeddings:
        out = torch.nn.functional.normalize(out, dim=-1)
    return out.numpy() if convert_to_numpy else out


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
    model.eval()  # also when a caller hands over a model left in training mode
    device = next(model.parameters()).device
    pool.to(device).eval()
    hidden_states = needs_hidden_states(pool)
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
            out = torch.empty((len(input_ids), pooled.shape[-1]), dtype=torch.float32)
        out[batch] = pooled
    if out is None:  # no sequences
        out = torch.empty((0, model.config.hidden_size), dtype=torch.float32)
    return out


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


# ---------------------------------------------------------------------------------------------------
# The .npz of `seqstruct embed`, written as it is computed
# ---------------------------------------------------------------------------------------------------

CHUNK_SIZE = 4096  # records read, tokenised and embedded at a time: what bounds embed_file's memory


@contextmanager
def _scratch_file(beside: Path) -> Iterator[Path]:
    """An empty temporary file beside `beside`, named as `atomic_path` names its own (`.NAME.*.tmp`, so a
    leftover of a killed run is recognisable), removed however the block ends."""
    fd, name = tempfile.mkstemp(dir=beside.parent, prefix=f".{beside.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def check_output(path: str | Path) -> Path:
    """`path` if embed_file can write its .npz there, else a ValueError saying why: called before anything
    is read or computed, so a typo costs seconds, not the hours of a large input. The parent directory is
    created if missing (as the atomic write would) and a scratch file is made and removed in it."""
    path = Path(path)
    if path.suffix != ".npz":
        # np.savez would add the suffix behind the caller's back; `evaluate` knows stored embeddings by it.
        raise ValueError(
            f"{path}: the output must be named *.npz (ids and embeddings, as np.load reads them)"
        )
    if path.is_dir():
        raise ValueError(f"{path}: is a directory; expected the path of a .npz file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _scratch_file(path):
            pass
    except OSError as err:
        raise ValueError(f"{path}: cannot write the output there ({err.strerror or err})") from err
    return path


def _npy_header(handle: zipfile.ZipExtFile, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    """The header np.save writes before an array's bytes (format 1.0, C order)."""
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(handle, header)


def _write_npz(
    path: Path,
    count: int,
    id_width: int,
    chunks: Iterable[tuple[Sequence[str], np.ndarray]],
    empty_dim: int,
    **metadata: str,
) -> None:
    """Write `count` ids (none longer than `id_width`) and their vectors, arriving in order in `chunks`
    (`empty_dim` wide when there are none), as the .npz `np.savez(ids=..., embeddings=float32,
    **metadata)` writes (uncompressed zip, one .npy member each), holding one chunk at a time; atomically.

    The counts go in the .npy headers before the data, hence given up front (the width comes with the first
    chunk): the vectors stream into their member, the ids (a zip takes one member at a time) into a scratch
    file beside `path`, copied in after. The temporary files exist from the start, so an interrupted run
    leaves nothing but what its name says is a leftover.
    """
    id_dtype = np.dtype(f"<U{max(id_width, 1)}")  # what np.array(ids, dtype=str) gives
    vector_dtype = np.dtype("<f4")
    rows = 0
    with (
        atomic_path(path) as tmp,
        _scratch_file(path) as ids_tmp,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive,
    ):
        stream = iter(chunks)
        first = next(stream, None)
        dim = empty_dim if first is None else first[1].shape[1]
        with archive.open("embeddings.npy", "w", force_zip64=True) as member, open(ids_tmp, "wb") as id_file:
            _npy_header(member, vector_dtype, (count, dim))
            for ids, vectors in itertools.chain([] if first is None else [first], stream):
                rows += len(ids)
                if vectors.shape != (len(ids), dim) or rows > count:
                    raise _unlike_counted(path, f"{vectors.shape} vectors for {len(ids)} ids", count, dim)
                if any(len(record_id) > id_width for record_id in ids):
                    raise _unlike_counted(path, "an id longer than any counted", count, dim)
                member.write(np.ascontiguousarray(vectors, dtype=vector_dtype).tobytes())
                id_file.write(np.array(ids, dtype=id_dtype).tobytes())
        if rows != count:
            raise _unlike_counted(path, f"{rows} rows", count, dim)
        with archive.open("ids.npy", "w", force_zip64=True) as member, open(ids_tmp, "rb") as id_file:
            _npy_header(member, id_dtype, (count,))
            shutil.copyfileobj(id_file, member, 1 << 20)
        for key, value in metadata.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.array(value), allow_pickle=False)


def _unlike_counted(path: Path, got: str, count: int, dim: int) -> ValueError:
    # Counted by a first reading of the input; a file that grew or changed since then would be written
    # wrongly under the headers already out, so nothing is written.
    return ValueError(
        f"{path}: {got}, unlike the {count} x {dim} counted first (did the input change while it was read?)"
    )


def save_embeddings(path: str | Path, ids: Sequence[str], embeddings: np.ndarray, **metadata: str) -> None:
    """Write ids and (N, D) vectors to a .npz readable with `np.load(path)` (no pickle: ids are a unicode
    array), the same file embed_file streams, atomically."""
    ids = [str(record_id) for record_id in ids]
    if embeddings.ndim != 2 or len(ids) != len(embeddings):
        raise ValueError(f"{len(ids)} ids for embeddings of shape {embeddings.shape} (expected (N, D))")
    width = max(map(len, ids), default=0)
    _write_npz(Path(path), len(ids), width, [(ids, embeddings)], embeddings.shape[1], **metadata)


def _scan(inputs: str | Path) -> tuple[int, int]:
    """(records, longest id) of an input file, every record read and checked: a bad one fails here, before
    the model loads, rather than hours into embedding; the counts are what the .npz headers need first."""
    count = width = 0
    for record_id, _ in iter_inputs(inputs):
        count += 1
        width = max(width, len(record_id))
    return count, width


def _chunks(records: Iterator[tuple[str, str]], size: int) -> Iterator[tuple[list[str], list[str]]]:
    """(ids, sequences) of `size` records at a time (the last chunk may be shorter)."""
    while chunk := list(itertools.islice(records, size)):
        ids, sequences = zip(*chunk, strict=True)
        yield list(ids), list(sequences)


def _embedded_chunks(
    embedder: Embedder,
    inputs: str | Path,
    chunk_size: int,
    batch_size: int,
    max_tokens: int,
    max_length: int | None,
    normalize_embeddings: bool,
    progress: tqdm,
) -> Iterator[tuple[list[str], np.ndarray]]:
    """(ids, vectors) of each chunk of `inputs`, in input order: within a chunk, encode()'s length-sorted
    token-budget batches. Truncation is logged once, for the whole file."""
    cut = total = 0
    for ids, sequences in _chunks(iter_inputs(inputs), chunk_size):
        input_ids, chunk_cut = _tokenize(embedder.tokenizer, sequences, max_length)
        vectors = _encode_tokens(
            embedder.model, embedder.tokenizer, embedder.head, input_ids, batch_size, max_tokens, False
        )
        if normalize_embeddings:
            vectors = torch.nn.functional.normalize(vectors, dim=-1)
        cut, total = cut + chunk_cut, total + len(ids)
        progress.update(len(ids))
        yield ids, vectors.numpy()
    _log_truncated(max_length, cut, total)


def embed_file(
    model_dir: str | Path,
    inputs: str | Path,
    output: str | Path,
    pooling: str | None = None,
    batch_size: int = 64,
    max_tokens: int = 16384,
    max_length: int | None = None,
    normalize_embeddings: bool = False,
    chunk_size: int = CHUNK_SIZE,
) -> int:
    """Embed every record of an input file into `output` (.npz with `ids`, `embeddings`, and the
    `pooling` and `model` used), written atomically; returns N.

    In bounded memory: `output` is checked, then `inputs` read through once (checked and counted) before
    the model loads, then read again `chunk_size` records at a time, each chunk embedded as `encode()`
    would and written at once. The vectors equal encode()'s on the whole file to float tolerance (batches
    form within a chunk). max_length None: a sentence-transformers model's max_seq_length, else none.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size {chunk_size}: must be at least 1")
    output = check_output(output)
    count, id_width = _scan(inputs)
    embedder = load_embedder(model_dir, pooling)
    limit = embedder.max_length if max_length is None else max_length
    with tqdm(total=count, desc="embedding", unit="record") as progress:
        chunks = _embedded_chunks(
            embedder, inputs, chunk_size, batch_size, max_tokens, limit, normalize_embeddings, progress
        )
        empty_dim = embedder.model.config.hidden_size  # what encode() gives for no sequences
        _write_npz(output, count, id_width, chunks, empty_dim, pooling=embedder.pooling, model=str(model_dir))
    return count
