"""The file `seqstruct embed` writes: one `.npz`, built from per-chunk parts, resumable, read without pickle.

Layout (`np.load(path, allow_pickle=False)` reads every member; N records, D the encoder's hidden size):

    ids               (N,)     unicode   record ids in input order (FASTA headers, line numbers, "id"s)
    embeddings        (N, D')  float32   `pooled`: the --pooling vector (the default, and all of it by default)
    pooling, model    ()       str       the pooling's name (with `pooled`), the model as given
    mean_L<l>         (N, D)   float32   `mean`: the mean of hidden_states[l] over residues
    bos_L<l>          (N, D)   float32   `bos`: hidden_states[l] of the first token (<cls> / [CLS])
    per_residue_L<l>  (R, D)   float32 | float16   `per_residue`: hidden_states[l] of every residue,
                                         records one after another (R = lengths.sum())
    offsets           (N+1,)   int64     with per_residue: record i's rows are offsets[i]:offsets[i+1]
    lengths           (N,)     int64     residues embedded per record (after truncation)
    truncated         (N,)     bool      whether max_length cut the record
    layers            (n,)     int64     the layers written

Layers follow ESM's `repr_layers`: indices of hidden_states, 0 the embedding output and -1 the last layer,
written resolved (`-1` on a 6-layer model is `_L6`). "Residues" are the tokens of the sequence itself:
the <cls>/<eos> ([CLS]/[SEP]) the tokenizer adds are left out of `mean` and `per_residue`, as ESM's
extract leaves them out. With the default (`pooled` alone) the file is `ids`, `embeddings`, `pooling` and
`model`, what `seqstruct evaluate` reads. Members are stored uncompressed, so `open_array` memory-maps
them and `read_per_residue` reads one record of a file larger than memory.

Why one .npz and not HDF5 per id (bio_embeddings, ProtTrans): numpy reads it with no new dependency and
no pickle, 500k records are N rows and not 500k datasets, and the pooled file stays today's.

Streaming and resuming (`Parts`): each chunk of records is written, once embedded, as an atomic
`OUT.npz.parts/part-NNNNNN.npz` beside the output, with `manifest.json` (the settings that make the file
what it is, the input's size and mtime, the model's files) written first. The output is assembled from
the parts member by member, one part in memory at a time, then the directory is removed; so memory is
that of one chunk, and disk holds the result twice while assembling. An interrupted run keeps the
directory when a chunk was finished; `--resume` skips the finished chunks after checking every setting
(a different one is refused by name), and without it the directory is refused rather than overwritten.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqstruct.io import DirectoryBusy, DirectoryLock, atomic_open, atomic_path, remove_temporary_files

logger = logging.getLogger(__name__)

INCLUDE = ("pooled", "mean", "per_residue", "bos")  # what a file may hold, `--include`
PER_LAYER = ("mean", "per_residue", "bos")  # the ones written for every layer asked for
RESIDUE_DTYPES = ("float32", "float16")
CHUNK_SIZE = 4096  # records embedded and written as one part: what bounds embed_file's memory
# With per_residue, a chunk also ends once its residues x D x layers reach this many values (512 MiB of
# float32), so long proteins or a wide model do not multiply a chunk's memory.
CHUNK_VALUES = 1 << 27


# ---------------------------------------------------------------------------------------------------
# What a file holds
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputSpec:
    """The representations asked for (`--include`, `--layers`, `--residue-dtype`), checked."""

    include: tuple[str, ...] = ("pooled",)  # names from INCLUDE; repeats dropped
    layers: tuple[int, ...] = (-1,)  # ESM's repr_layers, for the PER_LAYER representations
    residue_dtype: str = "float32"  # of per_residue (float16 halves the largest member)

    def __post_init__(self) -> None:
        include = tuple(dict.fromkeys(self.include))
        unknown = [name for name in include if name not in INCLUDE]
        if unknown or not include:
            raise ValueError(f"include {list(self.include)}: expected one or more of {list(INCLUDE)}")
        if not self.layers:
            raise ValueError("layers: give at least one (ESM's convention: 0 embeddings, -1 the last)")
        if tuple(self.layers) != (-1,) and not any(name in PER_LAYER for name in include):
            raise ValueError(
                f"layers {list(self.layers)} apply to mean, per_residue and bos; include none of them "
                f"(include {list(include)})"
            )
        if self.residue_dtype not in RESIDUE_DTYPES:
            raise ValueError(f"residue_dtype {self.residue_dtype!r}: expected one of {list(RESIDUE_DTYPES)}")
        object.__setattr__(self, "include", include)
        object.__setattr__(self, "layers", tuple(int(layer) for layer in self.layers))

    @property
    def per_layer(self) -> tuple[str, ...]:
        return tuple(name for name in PER_LAYER if name in self.include)


def resolve_layers(layers: Sequence[int], num_layers: int) -> tuple[int, ...]:
    """ESM's `repr_layers` as indices of hidden_states (num_layers + 1 of them): -1 is num_layers; repeats
    (-1 and num_layers) kept once, in the order given."""
    resolved: list[int] = []
    for layer in layers:
        if not -(num_layers + 1) <= layer <= num_layers:
            raise ValueError(
                f"layer {layer}: the model has hidden states 0 (embedding output) to {num_layers} "
                f"(-1 to -{num_layers + 1} counted from the last)"
            )
        index = layer % (num_layers + 1)
        if index not in resolved:
            resolved.append(index)
    return tuple(resolved)


def member_name(kind: str, layer: int) -> str:
    return f"{kind}_L{layer}"


# ---------------------------------------------------------------------------------------------------
# Writing a .npz member by member
# ---------------------------------------------------------------------------------------------------


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


@dataclass
class Member:
    """One array of a .npz to write, arriving in row blocks (any iterable: read lazily, one at a time)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]  # the whole array's; blocks stack along the first axis to it
    blocks: Iterable[np.ndarray]


def write_npz(path: Path, members: Iterable[Member], metadata: dict[str, str] | None = None) -> None:
    """Write `members` (then `metadata` strings) as the .npz `np.savez` would (uncompressed zip, one .npy
    each, format 1.0), one block in memory at a time; atomically. The shapes go in the .npy headers before
    the data, hence given up front; blocks that do not add up to them fail, naming the member."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for member in members:
            with archive.open(f"{member.name}.npy", "w", force_zip64=True) as handle:
                header = {
                    "descr": np.lib.format.dtype_to_descr(np.dtype(member.dtype)),
                    "fortran_order": False,
                    "shape": member.shape,
                }
                np.lib.format.write_array_header_1_0(handle, header)
                rows = 0
                for block in member.blocks:
                    if block.dtype.kind in "US" and block.dtype.itemsize > np.dtype(member.dtype).itemsize:
                        # Casting would cut the strings; an id longer than counted means the input changed.
                        raise ValueError(
                            f"{path}: {member.name}: {block.dtype} values wider than {member.dtype}"
                        )
                    block = np.ascontiguousarray(block, dtype=member.dtype)
                    rows += len(block)
                    if block.shape[1:] != member.shape[1:] or rows > member.shape[0]:
                        raise ValueError(
                            f"{path}: {member.name}: a block of shape {block.shape} beyond the "
                            f"{member.shape} announced"
                        )
                    if block.size:  # memoryview cannot cast an empty array
                        handle.write(memoryview(block).cast("B"))
                if rows != member.shape[0]:
                    raise ValueError(
                        f"{path}: {member.name}: {rows} rows, not the {member.shape[0]} announced"
                    )
        for key, value in (metadata or {}).items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, np.array(value), allow_pickle=False)


def _id_dtype(width: int) -> np.dtype:
    return np.dtype(f"<U{max(width, 1)}")  # what np.array(ids, dtype=str) gives


def save_embeddings(path: str | Path, ids: Sequence[str], embeddings: np.ndarray, **metadata: str) -> None:
    """Write ids and (N, D) vectors to a .npz readable with `np.load(path)` (no pickle: ids are a unicode
    array), the file `seqstruct embed` writes by default, atomically."""
    ids = [str(record_id) for record_id in ids]
    if embeddings.ndim != 2 or len(ids) != len(embeddings):
        raise ValueError(f"{len(ids)} ids for embeddings of shape {embeddings.shape} (expected (N, D))")
    id_dtype = _id_dtype(max(map(len, ids), default=0))
    members = [
        Member("embeddings", np.dtype("<f4"), embeddings.shape, [embeddings]),
        Member("ids", id_dtype, (len(ids),), [np.array(ids, dtype=id_dtype)]),
    ]
    write_npz(Path(path), members, metadata)


# ---------------------------------------------------------------------------------------------------
# Reading without loading
# ---------------------------------------------------------------------------------------------------


def open_array(path: str | Path, name: str) -> np.ndarray:
    """Member `name` of a .npz, memory-mapped read-only when stored uncompressed (as seqstruct writes it),
    else read whole; never unpickled."""
    with zipfile.ZipFile(path) as archive:
        try:
            info = archive.getinfo(f"{name}.npy")
        except KeyError:
            names = sorted(n.removesuffix(".npy") for n in archive.namelist())
            raise ValueError(f"{path}: no {name!r} array; it holds {names}") from None
        if info.compress_type != zipfile.ZIP_STORED:
            with np.load(path, allow_pickle=False) as data:
                return data[name]
        with archive.open(info) as handle:
            version = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0
            if version != (1, 0):
                read_header = np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(handle)
            header_size = handle.tell()
    if dtype.hasobject:
        raise ValueError(f"{path}: {name} holds Python objects (pickled); refused")
    if not np.prod(shape, dtype=np.int64):
        return np.empty(shape, dtype=dtype)  # an empty file region cannot be mapped
    # The member's bytes start after its local zip header, whose extra field may differ from the
    # central directory's copy: read it there.
    with open(path, "rb") as raw:
        raw.seek(info.header_offset)
        local = raw.read(30)
    name_length, extra_length = struct.unpack("<HH", local[26:30])
    start = info.header_offset + 30 + name_length + extra_length + header_size
    order = "F" if fortran else "C"
    return np.memmap(path, dtype=dtype, mode="r", offset=start, shape=shape, order=order)


def _per_residue_name(path: str | Path, layer: int | None) -> str:
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    layers = [int(n[len("per_residue_L") : -len(".npy")]) for n in names if n.startswith("per_residue_L")]
    if not layers:
        raise ValueError(
            f"{path}: no per-residue vectors (written by `seqstruct embed --include per_residue`)"
        )
    if layer is None and len(layers) == 1:
        return member_name("per_residue", layers[0])
    if layer not in layers:
        raise ValueError(
            f"{path}: per-residue layers are {sorted(layers)} (indices of hidden_states, 0 the embedding "
            f"output); got layer {layer}"
        )
    return member_name("per_residue", layer)


def iter_per_residue(path: str | Path, layer: int | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """(id, (L_i, D) residue vectors) of every record in file order, read-only views of the memory-mapped
    file. layer: as the file names it (`_L6`: 6); None when it holds one layer."""
    rows = open_array(path, _per_residue_name(path, layer))
    offsets = open_array(path, "offsets")
    for i, record_id in enumerate(open_array(path, "ids")):
        yield str(record_id), rows[offsets[i] : offsets[i + 1]]


def read_per_residue(path: str | Path, record_id: str, layer: int | None = None) -> np.ndarray:
    """The (L, D) residue vectors of one record, read from the file without loading the rest."""
    name = _per_residue_name(path, layer)
    found = np.flatnonzero(open_array(path, "ids") == record_id)
    if not len(found):
        raise KeyError(f"{path}: no record {record_id!r}")
    offsets = open_array(path, "offsets")
    i = int(found[0])
    return np.array(open_array(path, name)[offsets[i] : offsets[i + 1]])


# ---------------------------------------------------------------------------------------------------
# Parts: finished chunks beside the output, and the file assembled from them
# ---------------------------------------------------------------------------------------------------

MANIFEST = "manifest.json"


def parts_directory(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def _differences(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """`key (X then, Y now)` for each setting that differs; JSON on both sides (tuples become lists)."""
    now = json.loads(json.dumps(now))
    out = []
    for key in sorted(set(before) | set(now)):
        if before.get(key) != now.get(key):
            if isinstance(now.get(key), dict) or isinstance(before.get(key), dict):
                out.append(f"{key} (changed)")
            else:
                out.append(f"{key} ({before.get(key)!r} then, {now.get(key)!r} now)")
    return out


class Parts:
    """The finished chunks of one `embed_file` run, in `OUT.npz.parts/`, held under a lock."""

    def __init__(self, directory: Path, lock: DirectoryLock) -> None:
        self.directory = directory
        self.lock = lock

    @classmethod
    def open(cls, output: Path, settings: dict[str, Any], resume: bool) -> Parts:
        """The parts directory of `output`, locked: new (its manifest written), or an interrupted run's
        when `resume` and its manifest holds the same `settings`; refused otherwise, naming why."""
        directory = parts_directory(output)
        if directory.exists() and not directory.is_dir():
            raise ValueError(f"{directory}: in the way of the parts directory of {output}")
        existed = directory.is_dir()
        directory.mkdir(exist_ok=True)
        lock = DirectoryLock(directory, target=output)
        holder = lock.acquire()
        if holder is not None:
            raise DirectoryBusy(f"{output} is being written by {holder} (lock {lock.path}); wait for it")
        parts = cls(directory, lock)
        try:
            manifest = directory / MANIFEST
            if manifest.is_file():
                try:
                    before = json.loads(manifest.read_text(encoding="utf-8"))
                except ValueError as err:  # cut off or edited: its parts cannot be trusted to match
                    raise ValueError(
                        f"{manifest}: not a readable manifest ({err}); remove {directory} to start again"
                    ) from None
                done = parts.count()
                if not resume:
                    raise ValueError(
                        f"{directory}: an interrupted run left {done} finished chunks of {output} here; "
                        "run the same command with --resume to continue it, or remove the directory"
                    )
                differ = _differences(before, settings)
                if differ:
                    raise ValueError(
                        f"cannot resume {output} from {directory}: other settings than the interrupted "
                        f"run's: {'; '.join(differ)}"
                    )
                remove_temporary_files(directory)  # a part a killed run did not finish
                logger.info("%s: resuming after %d finished chunks", output, done)
            else:
                if resume:
                    logger.info("%s: nothing to resume (no %s); starting", output, manifest)
                for leftover in directory.glob("part-*.npz"):  # without a manifest, of nothing known
                    leftover.unlink()
                with atomic_open(manifest) as handle:
                    json.dump(settings, handle, indent=1)
        except BaseException:
            parts.close(keep=existed, announce=False)  # an interrupted run's parts stay as they were
            raise
        return parts

    def path(self, index: int) -> Path:
        return self.directory / f"part-{index:06d}.npz"

    def count(self) -> int:
        """Finished parts: 0 .. count-1 (written in order, each atomically)."""
        index = 0
        while self.path(index).is_file():
            index += 1
        return index

    def done(self, index: int) -> bool:
        return self.path(index).is_file()

    def check(self, index: int, ids: Sequence[str]) -> None:
        """A finished part holds the records of the chunk the input has there, or the run is refused."""
        with np.load(self.path(index), allow_pickle=False) as part:
            held = part["ids"].tolist()
        if held != list(ids):
            raise ValueError(
                f"{self.path(index)}: holds other records than chunk {index} of the input "
                f"({len(held)} from {held[:1]}, the input {len(ids)} from {list(ids)[:1]}); remove "
                f"{self.directory} to start over"
            )

    def write(self, index: int, ids: Sequence[str], arrays: dict[str, np.ndarray]) -> None:
        id_dtype = _id_dtype(max(map(len, ids), default=0))
        with atomic_path(self.path(index)) as tmp, open(tmp, "wb") as handle:
            # A handle, not a name: np.savez would append .npz to the temporary name.
            np.savez(handle, ids=np.array(list(ids), dtype=id_dtype), **arrays)

    def _blocks(self, name: str) -> Iterator[np.ndarray]:
        for index in range(self.count()):
            with np.load(self.path(index), allow_pickle=False) as part:
                yield part[name]

    def _width(self, name: str, default: int) -> int:
        """The second dimension of member `name` of the first part (`default` with no parts)."""
        if not self.done(0):
            return default
        return int(open_array(self.path(0), name).shape[1])

    def assemble(
        self,
        output: Path,
        count: int,
        id_width: int,
        spec: OutputSpec,
        layers: tuple[int, ...],
        dim: int,
        metadata: dict[str, str],
    ) -> int:
        """Write `output` (the layout above) from the parts, one part's member at a time; returns how many
        records max_length cut. `count` and `id_width` are the input's (counted first), `dim` the encoder's
        hidden size (what an empty input's arrays get)."""
        lengths = list(self._blocks("lengths"))  # (N,) in all: small beside any vector member
        rows = sum(len(block) for block in lengths)
        if rows != count:
            # Counted by a first reading of the input; a file that changed since then would be written
            # wrongly, so nothing is.
            raise ValueError(
                f"{output}: the parts hold {rows} records, unlike the {count} counted first (did the input "
                "change while it was read?)"
            )
        residues = int(sum(int(block.sum()) for block in lengths))
        members = [Member("ids", _id_dtype(id_width), (count,), self._blocks("ids"))]
        if "pooled" in spec.include:
            width = self._width("embeddings", dim)
            members.append(Member("embeddings", np.dtype("<f4"), (count, width), self._blocks("embeddings")))
        for kind in spec.per_layer:
            for layer in layers:
                name = member_name(kind, layer)
                if kind == "per_residue":
                    shape, dtype = (residues, dim), np.dtype(spec.residue_dtype).newbyteorder("<")
                else:
                    shape, dtype = (count, dim), np.dtype("<f4")
                members.append(Member(name, dtype, shape, self._blocks(name)))
        if spec.per_layer:
            members += [
                Member("lengths", np.dtype("<i8"), (count,), lengths),
                Member("truncated", np.dtype("bool"), (count,), self._blocks("truncated")),
                Member("layers", np.dtype("<i8"), (len(layers),), [np.array(layers, dtype=np.int64)]),
            ]
        if "per_residue" in spec.include:
            members.append(Member("offsets", np.dtype("<i8"), (count + 1,), _offsets(lengths)))
        write_npz(output, members, metadata)
        return int(sum(int(block.sum()) for block in self._blocks("truncated")))

    def close(self, keep: bool, announce: bool = True) -> None:
        """Release the lock; the directory stays only when `keep` and a chunk is finished (something to
        resume; `announce` says so), else it is removed."""
        done = self.count() if self.directory.is_dir() else 0
        if not (keep and done):
            shutil.rmtree(self.directory, ignore_errors=True)
        elif announce:
            logger.warning(
                "%s: %d finished chunks kept; run the same command with --resume to continue",
                self.directory,
                done,
            )
        self.lock.release()


def _offsets(lengths: list[np.ndarray]) -> Iterator[np.ndarray]:
    """Blocks of the (N+1,) offsets from per-part lengths: 0, then the running sums."""
    total = 0
    yield np.zeros(1, dtype=np.int64)
    for block in lengths:
        ends = total + np.cumsum(block, dtype=np.int64)
        total = int(ends[-1]) if len(ends) else total
        yield ends
