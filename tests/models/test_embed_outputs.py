"""The file `seqstruct embed` writes beyond pooled vectors: per-layer and per-residue members, the reader,
and resuming an interrupted run from its finished parts."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from seqstruct.io import DirectoryBusy, DirectoryLock
from seqstruct.models import extract as extract_module
from seqstruct.models.embed import encode, encode_representations, load_encoder
from seqstruct.models.embed_outputs import (
    Member,
    OutputSpec,
    iter_per_residue,
    open_array,
    read_per_residue,
    resolve_layers,
    write_npz,
)
from seqstruct.models.extract import embed_file
from tests.helpers import sample_records

EVERYTHING = ["pooled", "mean", "per_residue", "bos"]


@pytest.fixture(scope="module")
def fasta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 proteins of 5 to 63 residues: lengths that differ within every batch."""
    path = tmp_path_factory.mktemp("in") / "p.fasta"
    records = sample_records(30, max_residues=200)
    path.write_text("".join(f">{r.id}\n{r.sequence[: 5 + 2 * i]}\n" for i, r in enumerate(records)))
    return path


def _records(path: Path) -> tuple[list[str], list[str]]:
    lines = path.read_text().split()
    return [line[1:] for line in lines[::2]], lines[1::2]


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def test_every_representation_is_written_in_input_order(protein_model, fasta, tmp_path) -> None:
    out = tmp_path / "all.npz"
    n = embed_file(
        protein_model,
        fasta,
        out,
        include=EVERYTHING,
        layers=[-1, 0],
        max_length=40,
        chunk_size=7,
        batch_size=4,
    )
    data = _load(out)
    assert sorted(data) == sorted(
        ["ids", "embeddings", "pooling", "model", "lengths", "truncated", "layers", "offsets"]
        + [f"{kind}_L{layer}" for kind in ("mean", "per_residue", "bos") for layer in (2, 0)]
    )
    ids, sequences = _records(fasta)
    assert n == 30 and data["ids"].tolist() == ids and data["layers"].tolist() == [2, 0]
    # Truncation recorded: max_length 40 keeps 38 residues between <cls> and <eos>.
    assert data["lengths"].tolist() == [min(len(s), 38) for s in sequences]
    assert data["truncated"].tolist() == [len(s) > 38 for s in sequences]
    assert data["offsets"].tolist() == [0, *np.cumsum(data["lengths"]).tolist()]
    assert data["per_residue_L0"].shape == (data["lengths"].sum(), 32)

    model, tokenizer = load_encoder(protein_model)
    reps = encode_representations(
        model, tokenizer, sequences, layers=[-1, 0], include=["mean", "per_residue", "bos"], max_length=40
    )
    offsets = data["offsets"]
    for layer in (2, 0):
        np.testing.assert_allclose(data[f"mean_L{layer}"], reps.mean[layer], atol=1e-5)
        np.testing.assert_allclose(data[f"bos_L{layer}"], reps.bos[layer], atol=1e-5)
        for i in range(n):
            rows = data[f"per_residue_L{layer}"][offsets[i] : offsets[i + 1]]
            np.testing.assert_allclose(rows, reps.per_residue[layer][i], atol=1e-5)
    np.testing.assert_allclose(
        data["embeddings"], encode(model, tokenizer, sequences, max_length=40), atol=1e-5
    )
    np.testing.assert_allclose(data["mean_L2"], data["embeddings"], atol=1e-5)  # mean pooling = residue mean

    # The reader: one record, or every one in order, without loading the file.
    np.testing.assert_array_equal(read_per_residue(out, ids[3], layer=0), reps.per_residue[0][3])
    streamed = list(iter_per_residue(out, layer=2))
    assert [record_id for record_id, _ in streamed] == ids
    np.testing.assert_array_equal(streamed[-1][1], data["per_residue_L2"][offsets[-2] :])
    with pytest.raises(ValueError, match=r"per-residue layers are \[0, 2\].*got layer None"):
        read_per_residue(out, ids[0])
    with pytest.raises(KeyError, match="no record 'nope'"):
        read_per_residue(out, "nope", layer=0)


def test_per_residue_alone_in_float16(protein_model, fasta, tmp_path) -> None:
    out = tmp_path / "residues.npz"
    embed_file(protein_model, fasta, out, include=["per_residue"], residue_dtype="float16", chunk_size=8)
    data = _load(out)
    assert sorted(data) == ["ids", "layers", "lengths", "model", "offsets", "per_residue_L2", "truncated"]
    assert data["per_residue_L2"].dtype == np.float16
    ids, sequences = _records(fasta)
    model, tokenizer = load_encoder(protein_model)
    rows = encode(model, tokenizer, sequences, output_value="token_embeddings")
    np.testing.assert_allclose(read_per_residue(out, ids[29]), rows[29], atol=2e-3)  # float16 rounding
    assert isinstance(open_array(out, "per_residue_L2"), np.memmap)


def test_open_array_reads_a_compressed_npz_whole(tmp_path) -> None:
    np.savez_compressed(tmp_path / "c.npz", a=np.arange(6).reshape(3, 2))
    np.testing.assert_array_equal(open_array(tmp_path / "c.npz", "a"), np.arange(6).reshape(3, 2))
    with pytest.raises(ValueError, match=r"no 'b' array; it holds \['a'\]"):
        open_array(tmp_path / "c.npz", "b")


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, chunks: int) -> list[int]:
    """Make embed_file raise KeyboardInterrupt when it starts chunk `chunks` (0-based); returns the calls."""
    calls: list[int] = []
    represent = extract_module.represent

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == chunks + 1:
            raise KeyboardInterrupt
        return represent(*args, **kwargs)

    monkeypatch.setattr(extract_module, "represent", interrupted)
    return calls


SETTINGS = dict(include=["pooled", "per_residue", "bos"], layers=[0, -1], max_length=30, chunk_size=6)


def test_a_resumed_run_writes_the_file_of_an_uninterrupted_one(
    protein_model, fasta, tmp_path, monkeypatch
) -> None:
    embed_file(protein_model, fasta, tmp_path / "whole.npz", **SETTINGS)
    out = tmp_path / "resumed.npz"
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        embed_file(protein_model, fasta, out, **SETTINGS)
    parts = tmp_path / "resumed.npz.parts"
    assert not out.exists() and len(list(parts.glob("part-*.npz"))) == 2
    monkeypatch.undo()

    with pytest.raises(ValueError, match="left 2 finished chunks .* --resume to continue it"):
        embed_file(protein_model, fasta, out, **SETTINGS)  # not overwritten without --resume
    calls = _interrupt_after(monkeypatch, 99)  # counts the chunks embedded, interrupts none
    # batch_size and max_tokens may change (after running out of memory, say): not in the output.
    assert embed_file(protein_model, fasta, out, resume=True, batch_size=3, max_tokens=256, **SETTINGS) == 30
    assert len(calls) == 3  # 5 chunks of 6, 2 already done
    assert not parts.exists()
    resumed, whole = _load(out), _load(tmp_path / "whole.npz")
    assert sorted(resumed) == sorted(whole)
    for name, array in whole.items():
        assert resumed[name].dtype == array.dtype
        if array.dtype.kind == "f":  # other batches, so float rounding apart
            np.testing.assert_allclose(resumed[name], array, atol=1e-5)
        else:
            np.testing.assert_array_equal(resumed[name], array)


def test_resuming_with_other_settings_is_refused_by_name(protein_model, fasta, tmp_path, monkeypatch) -> None:
    out = tmp_path / "emb.npz"
    _interrupt_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        embed_file(protein_model, fasta, out, **SETTINGS)
    monkeypatch.undo()
    changed = {**SETTINGS, "max_length": None, "layers": [0]}
    with pytest.raises(
        ValueError, match=r"layers \(\[0, -1\] then, \[0\] now\); max_length \(30 then, None now\)"
    ):
        embed_file(protein_model, fasta, out, resume=True, **changed)
    os.utime(fasta, ns=(fasta.stat().st_atime_ns, fasta.stat().st_mtime_ns + 10**9))
    with pytest.raises(ValueError, match=r"other settings than the interrupted run's: input_mtime_ns"):
        embed_file(protein_model, fasta, out, resume=True, **SETTINGS)
    assert len(list((tmp_path / "emb.npz.parts").glob("part-*.npz"))) == 1  # refusals keep the parts
    manifest = next(p for p in (tmp_path / "emb.npz.parts").iterdir() if p.suffix == ".json")
    manifest.write_text(manifest.read_text()[:20], encoding="utf-8")  # cut off
    with pytest.raises(
        ValueError, match=r"not a readable manifest .*; remove .*emb.npz.parts to start again"
    ):
        embed_file(protein_model, fasta, out, resume=True, **SETTINGS)


def test_a_second_writer_of_the_same_output_is_refused(protein_model, fasta, tmp_path) -> None:
    out = tmp_path / "emb.npz"
    (tmp_path / "emb.npz.parts").mkdir()
    with (
        DirectoryLock(tmp_path / "emb.npz.parts", target=out),  # as a live run holds it
        pytest.raises(DirectoryBusy, match="emb.npz is being written by"),
    ):
        embed_file(protein_model, fasta, out)
    assert not out.exists()


def test_the_default_file_is_written_through_parts_too(protein_model, fasta, tmp_path) -> None:
    out = tmp_path / "emb.npz"
    embed_file(protein_model, fasta, out, chunk_size=4)
    with zipfile.ZipFile(out) as archive:  # stored, so large members can be memory-mapped
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}
    assert sorted(_load(out)) == ["embeddings", "ids", "model", "pooling"]
    assert list(tmp_path.iterdir()) == [out]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"include": []}, "include \\[\\]: expected one or more"),
        ({"include": ["pooled"], "layers": [0]}, "layers \\[0\\] apply to mean, per_residue and bos"),
        ({"layers": []}, "layers: give at least one"),
        ({"residue_dtype": "bfloat16"}, "residue_dtype 'bfloat16'"),
    ],
)
def test_output_spec_refuses(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        OutputSpec(**kwargs)


def test_layers_resolve_as_esm_resolves_them() -> None:
    assert resolve_layers([-1, 0, 4, 6, -7], 6) == (6, 0, 4)
    assert OutputSpec(("mean", "mean", "bos")).include == ("mean", "bos")
    with pytest.raises(ValueError, match="layer 7: the model has hidden states 0"):
        resolve_layers([7], 6)


def test_write_npz_refuses_blocks_unlike_the_announced_shape(tmp_path) -> None:
    ids = Member("ids", np.dtype("<U2"), (2,), [np.array(["a", "abc"])])
    with pytest.raises(ValueError, match="ids: <U3 values wider than <U2"):
        write_npz(tmp_path / "x.npz", [ids])
    rows = Member("embeddings", np.dtype("<f4"), (3, 2), [np.zeros((2, 2))])
    with pytest.raises(ValueError, match="embeddings: 2 rows, not the 3 announced"):
        write_npz(tmp_path / "x.npz", [rows])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("attention", ["sdpa", "favor"])
def test_per_residue_of_a_padded_batch_equal_each_protein_alone(fasta, attention) -> None:
    """Issue 22: padding never leaks into a protein's residues, with exact attention or FAVOR+ (whose
    padded keys must leave the key state and the normaliser untouched)."""
    import torch

    import seqstruct  # noqa: F401  (registers attn_implementation="favor")
    from seqstruct.config import FavorConfig
    from seqstruct.data.tokenizers import build_protein_tokenizer
    from seqstruct.models.encoders import build_encoder

    tokenizer = build_protein_tokenizer()
    torch.manual_seed(0)
    extra = {"favor": FavorConfig()} if attention == "favor" else {}
    model = build_encoder("tiny", tokenizer, attn_implementation=attention, **extra).base_model.eval()
    _, sequences = _records(fasta)
    sequences = sequences[:6]
    assert len({len(s) for s in sequences}) > 1  # the batch is padded
    options = dict(layers=[-1, 0], include=["per_residue", "mean"])
    batched = encode_representations(model, tokenizer, sequences, batch_size=len(sequences), **options)
    for i, sequence in enumerate(sequences):
        alone = encode_representations(model, tokenizer, [sequence], batch_size=1, **options)
        for layer in batched.per_residue:
            assert batched.per_residue[layer][i].shape == (len(sequence), model.config.hidden_size)
            np.testing.assert_allclose(batched.per_residue[layer][i], alone.per_residue[layer][0], atol=1e-5)
            np.testing.assert_allclose(batched.mean[layer][i], alone.mean[layer][0], atol=1e-5)
