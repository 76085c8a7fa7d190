"""`seqstruct embed`: an input file in, a .npz out (ESM's `extract.py`, streamed and resumable).

`embed_file` checks the output path first, reads the input once to check every record and count them
(before the model loads), then reads it again in chunks, each tokenised and embedded (`models.embed`)
and written as a part beside the output, from which the file is assembled; memory stays that of one
chunk however many records there are, and an interrupted run continues from its finished parts. The
layout, the parts and resuming are `seqstruct.models.embed_outputs`'s; inputs are read by
`seqstruct.data.inputs.iter_inputs` (FASTA, .txt, .jsonl).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from seqstruct.data.inputs import iter_inputs
from seqstruct.models.embed import load_embedder, log_truncated, represent, tokenize
from seqstruct.models.embed_outputs import (
    CHUNK_SIZE,
    CHUNK_VALUES,
    OutputSpec,
    Parts,
    check_output,
    resolve_layers,
)
from seqstruct.models.io import resolve_model_path


def _scan(inputs: str | Path) -> tuple[int, int]:
    """(records, longest id) of an input file, every record read and checked: a bad one fails here, before
    the model loads, rather than hours into embedding; the counts are what the .npz headers need."""
    count = width = 0
    for record_id, _ in iter_inputs(inputs):
        count += 1
        width = max(width, len(record_id))
    return count, width


def _chunks(
    records: Iterator[tuple[str, str]], size: int, residues: int | None = None
) -> Iterator[tuple[list[str], list[str]]]:
    """(ids, sequences) of `size` records at a time, a chunk ending sooner once its sequences reach
    `residues` characters (a bound on their tokens) when given; a function of the input alone, so a
    resumed run cuts the same chunks."""
    while True:
        ids: list[str] = []
        sequences: list[str] = []
        total = 0
        for record_id, sequence in itertools.islice(records, size):
            ids.append(record_id)
            sequences.append(sequence)
            total += len(sequence)
            if residues is not None and total >= residues:
                break
        if not ids:
            return
        yield ids, sequences


def _fingerprint(model_dir: str | Path) -> dict[str, list[int]]:
    """Size and mtime of the files that make a model (weights, configs, a pooling's, one level down): a
    resumed run refuses a model retrained in place."""
    path = resolve_model_path(model_dir)
    files = [
        p
        for pattern in ("*.safetensors", "*.json", "*/*.safetensors", "*/*.json")
        for p in path.glob(pattern)
    ]
    return {str(p.relative_to(path)): [p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(files)}


def embed_file(
    model_dir: str | Path,
    inputs: str | Path,
    output: str | Path,
    pooling: str | None = None,
    batch_size: int = 64,
    max_tokens: int = 16384,
    max_length: int | None = None,
    normalize_embeddings: bool = False,
    include: Sequence[str] = ("pooled",),
    layers: Sequence[int] = (-1,),
    residue_dtype: str = "float32",
    resume: bool = False,
    chunk_size: int = CHUNK_SIZE,
) -> int:
    """Embed every record of an input file into `output`, a .npz in the layout of `embed_outputs` (by
    default `ids`, `embeddings`, and the `pooling` and `model` used), written atomically; returns N.

    include: of pooled (`embeddings` by `pooling`; `normalize_embeddings` applies to it), mean,
    per_residue and bos (for each of `layers`, ESM's repr_layers). In bounded memory: `output` is
    checked, then `inputs` read through once (checked and counted) before the model loads, then read
    again `chunk_size` records at a time, each chunk embedded as `encode()` would and written as a part
    beside the output; the file is assembled from the parts. An interrupted run keeps its finished parts;
    `resume` continues from them when every setting is the same (batch_size and max_tokens may change),
    and refuses otherwise. max_length None: a sentence-transformers model's max_seq_length, else none.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size {chunk_size}: must be at least 1")
    spec = OutputSpec(tuple(include), tuple(layers), residue_dtype)
    if normalize_embeddings and "pooled" not in spec.include:
        raise ValueError("normalize_embeddings L2-normalises the pooled embeddings; include pooled")
    output = check_output(output)
    count, id_width = _scan(inputs)
    stat = Path(inputs).stat()
    settings = {
        "input": str(Path(inputs).resolve()),
        "input_size": stat.st_size,
        "input_mtime_ns": stat.st_mtime_ns,
        "records": count,
        "model": str(model_dir),
        "model_files": _fingerprint(model_dir),
        "pooling": pooling,
        "include": list(spec.include),
        "layers": list(spec.layers),
        "residue_dtype": spec.residue_dtype,
        "max_length": max_length,
        "normalize_embeddings": normalize_embeddings,
        "chunk_size": chunk_size,
    }
    parts = Parts.open(output, settings, resume)
    try:
        embedder = load_embedder(model_dir, pooling)
        config = embedder.model.config
        resolved = resolve_layers(spec.layers, config.num_hidden_layers) if spec.per_layer else ()
        residues = None
        if "per_residue" in spec.include:
            residues = max(1, CHUNK_VALUES // (config.hidden_size * len(resolved)))
        limit = embedder.max_length if max_length is None else max_length
        head = embedder.head if "pooled" in spec.include else None
        with tqdm(total=count, desc="embedding", unit="record") as progress:
            for index, (ids, sequences) in enumerate(_chunks(iter_inputs(inputs), chunk_size, residues)):
                if parts.done(index):
                    parts.check(index, ids)
                else:
                    input_ids, cut = tokenize(embedder.tokenizer, sequences, limit)
                    arrays = represent(
                        embedder.model,
                        embedder.tokenizer,
                        head,
                        input_ids,
                        cut,
                        spec.per_layer,
                        resolved,
                        spec.residue_dtype,
                        batch_size,
                        max_tokens,
                    )
                    if normalize_embeddings:
                        unit = torch.nn.functional.normalize(torch.from_numpy(arrays["embeddings"]), dim=-1)
                        arrays["embeddings"] = unit.numpy()
                    parts.write(index, ids, arrays)
                progress.update(len(ids))
        metadata = {"pooling": embedder.pooling} if head is not None else {}
        metadata["model"] = str(model_dir)
        truncated = parts.assemble(output, count, id_width, spec, resolved, config.hidden_size, metadata)
    except BaseException:
        parts.close(keep=True)
        raise
    parts.close(keep=False)
    log_truncated(limit, truncated, count)
    return count
