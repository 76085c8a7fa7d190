from __future__ import annotations

import numpy as np
import pytest
import torch

from seqstruct.data.fasta import FastaError
from seqstruct.data.tokenizers import build_protein_tokenizer
from seqstruct.models import extract as extract_module
from seqstruct.models.embed import encode, encode_representations, load_encoder, save_embeddings
from seqstruct.models.embed_outputs import check_output
from seqstruct.models.encoders import build_encoder
from seqstruct.models.extract import embed_file
from seqstruct.models.io import save_model_dir
from seqstruct.models.pooling import POOLINGS, pooling_module
from tests.helpers import sample_records


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("model")
    tokenizer = build_protein_tokenizer()
    torch.manual_seed(0)
    save_model_dir(build_encoder("tiny", tokenizer), tokenizer, path)
    return path


@pytest.mark.parametrize("pooling", POOLINGS)
def test_alone_equals_in_padded_batch(model_dir, pooling: str) -> None:
    model, tokenizer = load_encoder(model_dir)
    sequences = [r.sequence for r in sample_records(12, max_residues=300)]
    batched = encode(model, tokenizer, sequences, batch_size=12, max_tokens=10**6, pooling=pooling)
    assert batched.shape == (12, model.config.hidden_size)
    lengths = {len(s) for s in sequences}
    assert len(lengths) > 1  # the batch really is padded
    for i, sequence in enumerate(sequences):
        alone = encode(model, tokenizer, [sequence], pooling=pooling)
        assert np.abs(alone[0] - batched[i]).max() <= 1e-5


def test_encode_keeps_order_normalizes_and_sets_eval(model_dir) -> None:
    model, tokenizer = load_encoder(model_dir)
    model.train()
    sequences = ["MKTAYIAKQRQISFVKSHFSRQ", "MK", "ACDEFGHIKLMNPQRSTVWY"]
    small_batches = encode(model, tokenizer, sequences, batch_size=1)
    assert not model.training
    reversed_order = encode(model, tokenizer, sequences[::-1], batch_size=3)
    np.testing.assert_allclose(small_batches, reversed_order[::-1], atol=1e-5)
    unit = encode(model, tokenizer, sequences, normalize_embeddings=True, convert_to_numpy=False)
    assert isinstance(unit, torch.Tensor)
    torch.testing.assert_close(unit.norm(dim=-1), torch.ones(3))


def test_embed_file_writes_ids_with_vectors(model_dir, protein_fasta, tmp_path) -> None:
    out = tmp_path / "emb.npz"
    n = embed_file(model_dir, protein_fasta, out, pooling="cls", max_tokens=512)
    with np.load(out, allow_pickle=False) as data:
        ids, vectors = data["ids"], data["embeddings"]
        assert str(data["pooling"]) == "cls"
    expected = [r.id for r in sample_records(120)]
    assert n == 120 and ids.tolist() == expected
    assert vectors.shape == (120, 32) and vectors.dtype == np.float32
    model, tokenizer = load_encoder(model_dir)
    first = encode(model, tokenizer, [sample_records(1, max_residues=150)[0].sequence], pooling="cls")
    np.testing.assert_allclose(vectors[0], first[0], atol=1e-5)


def test_max_length_truncates_and_says_how_many(model_dir, caplog) -> None:
    model, tokenizer = load_encoder(model_dir)
    sequences = ["ACDEFGHIKL" * 5, "MKT"]
    cut = encode(model, tokenizer, sequences, max_length=12)
    assert "max_length=12 truncated 1 of 2 sequences" in caplog.text
    manual = encode(model, tokenizer, [sequences[0][:10], "MKT"])
    np.testing.assert_allclose(cut, manual, atol=1e-5)  # the first 10 residues, <eos> kept


def test_hidden_states_only_when_the_pooling_reads_them(model_dir, monkeypatch) -> None:
    model, tokenizer = load_encoder(model_dir)
    asked: list[bool] = []
    forward = model.forward

    def spy(*args, **kwargs):
        asked.append(kwargs.get("output_hidden_states"))
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    for pooling in POOLINGS:
        asked.clear()
        encode(model, tokenizer, ["MKT", "ACDEF"], pooling=pooling)
        assert asked == [pooling == "first-last" or pooling.startswith("layer-attention")], pooling


def test_a_pooling_module_is_used_as_given(model_dir) -> None:
    model, tokenizer = load_encoder(model_dir)
    sequences = ["MKTAYIAKQRQ", "MK", "ACDEFGHIKLMNPQRSTVWY"]
    module = pooling_module("layer-attention", 32, 2, [0, 2], include_special_tokens=False, seed=0)
    with torch.no_grad():
        module.output.bias.fill_(3.0)  # not what a fresh seed-0 module holds
    given = encode(model, tokenizer, sequences, pooling=module)
    fresh = encode(model, tokenizer, sequences, pooling="layer-attention", seed=0)
    assert given.shape == fresh.shape == (3, 32) and np.abs(given - fresh).min() > 0.1
    # Fed the same features, the module and encode() agree.
    batch = tokenizer(sequences[:1], return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
        features = {
            **batch,
            "token_embeddings": out.last_hidden_state,
            "all_layer_embeddings": out.hidden_states,
        }
        np.testing.assert_allclose(module(features)["sentence_embedding"][0].numpy(), given[0], atol=1e-5)


def test_mean_with_special_tokens(model_dir) -> None:
    model, tokenizer = load_encoder(model_dir)
    batch = tokenizer(["MKT"], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state[0]  # (5, D): <cls> M K T <eos>
    residues = encode(model, tokenizer, ["MKT"])[0]
    every = encode(model, tokenizer, ["MKT"], include_special_tokens=True)[0]
    np.testing.assert_allclose(residues, hidden[1:4].mean(0).numpy(), atol=1e-5)
    np.testing.assert_allclose(every, hidden.mean(0).numpy(), atol=1e-5)


def _load(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def test_embed_file_in_chunks_equals_in_one(model_dir, protein_fasta, tmp_path) -> None:
    whole = embed_file(model_dir, protein_fasta, tmp_path / "one.npz", max_tokens=2048, chunk_size=1000)
    assert whole == embed_file(model_dir, protein_fasta, tmp_path / "many.npz", max_tokens=2048, chunk_size=7)
    one, many = _load(tmp_path / "one.npz"), _load(tmp_path / "many.npz")
    assert sorted(many) == ["embeddings", "ids", "model", "pooling"]
    assert many["ids"].tolist() == one["ids"].tolist() == [r.id for r in sample_records(120)]
    assert many["embeddings"].dtype == np.float32 and many["embeddings"].shape == (120, 32)
    np.testing.assert_allclose(many["embeddings"], one["embeddings"], atol=1e-5)  # batches differ, not rows
    model, tokenizer = load_encoder(model_dir)
    sequences = [r.sequence for r in sample_records(120, max_residues=150)]
    np.testing.assert_allclose(many["embeddings"], encode(model, tokenizer, sequences), atol=1e-5)
    assert str(many["pooling"]) == "mean" and str(many["model"]) == str(model_dir)


def test_save_embeddings_writes_what_np_savez_writes(tmp_path) -> None:
    ids = ["a", "longer-id", "Ω"]
    vectors = np.arange(6, dtype=np.float64).reshape(3, 2)
    save_embeddings(tmp_path / "ours.npz", ids, vectors, pooling="cls")
    np.savez(
        tmp_path / "numpy.npz",
        ids=np.array(ids, dtype=str),
        embeddings=vectors.astype(np.float32),
        pooling=np.array("cls"),
    )
    ours, reference = _load(tmp_path / "ours.npz"), _load(tmp_path / "numpy.npz")
    assert sorted(ours) == sorted(reference)
    for name, array in reference.items():
        assert ours[name].dtype == array.dtype and ours[name].shape == array.shape
        np.testing.assert_array_equal(ours[name], array)
    save_embeddings(tmp_path / "empty.npz", [], np.zeros((0, 4)))
    assert _load(tmp_path / "empty.npz")["ids"].dtype == np.array([], dtype=str).dtype


def test_truncation_is_logged_once_for_the_file(model_dir, tmp_path, caplog) -> None:
    fasta = tmp_path / "p.fasta"
    fasta.write_text("".join(f">P{i}\n{'ACDEFGHIKL' * (1 + i % 3)}\n" for i in range(9)))
    embed_file(model_dir, fasta, tmp_path / "cut.npz", max_length=15, chunk_size=2)
    assert [r.message for r in caplog.records if "truncated" in r.message] == [
        "max_length=15 truncated 6 of 9 sequences"
    ]


def test_an_empty_input_writes_an_empty_npz(model_dir, tmp_path) -> None:
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n")
    assert embed_file(model_dir, blank, tmp_path / "empty.npz") == 0
    assert _load(tmp_path / "empty.npz")["embeddings"].shape == (0, 32)


def _leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_a_bad_record_fails_before_the_model_loads_and_writes_nothing(protein_fasta, tmp_path) -> None:
    bad = tmp_path / "bad.fasta"
    bad.write_text(protein_fasta.read_text() + ">late\nMKT1\n")
    out = tmp_path / "out" / "emb.npz"
    with pytest.raises(FastaError, match=r"bad\.fasta, line \d+, record 'late': invalid character '1'"):
        embed_file(tmp_path / "no-such-model", bad, out, chunk_size=8)  # the model is never opened
    assert not out.exists() and _leftovers(out.parent) == []


def test_an_interrupted_run_leaves_the_old_output_its_finished_chunks_and_no_temporary_files(
    model_dir, protein_fasta, tmp_path, monkeypatch
) -> None:
    out = tmp_path / "emb.npz"
    out.write_bytes(b"the previous output")
    calls = []
    represent = extract_module.represent

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # two chunks written, then Ctrl-C
            raise KeyboardInterrupt
        return represent(*args, **kwargs)

    monkeypatch.setattr(extract_module, "represent", interrupted)
    with pytest.raises(KeyboardInterrupt):
        embed_file(model_dir, protein_fasta, out, chunk_size=16)
    assert out.read_bytes() == b"the previous output" and _leftovers(tmp_path) == []
    parts = tmp_path / "emb.npz.parts"  # kept for --resume (tests/models/test_embed_outputs.py)
    assert sorted(p.name for p in parts.glob("*.npz")) == ["part-000000.npz", "part-000001.npz"]
    assert _leftovers(parts) == []


def test_an_interruption_before_any_chunk_finished_leaves_nothing(
    model_dir, protein_fasta, tmp_path, monkeypatch
) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(extract_module, "represent", interrupted)
    with pytest.raises(KeyboardInterrupt):
        embed_file(model_dir, protein_fasta, tmp_path / "emb.npz")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("emb.npy", "must be named \\*.npz"),
        ("dir.npz", "dir.npz: is a directory"),
        ("file/emb.npz", "cannot write the output there"),
    ],
)
def test_check_output_refuses_what_cannot_be_written(tmp_path, name: str, message: str) -> None:
    (tmp_path / "dir.npz").mkdir()
    (tmp_path / "file").write_text("a file where a directory would be")
    with pytest.raises(ValueError, match=message):
        check_output(tmp_path / name)
    assert check_output(tmp_path / "new" / "emb.npz") == tmp_path / "new" / "emb.npz"
    assert _leftovers(tmp_path / "new") == []


# ---------------------------------------------------------------------------------------------------
# Per-layer and per-residue representations (ESM's repr_layers)
# ---------------------------------------------------------------------------------------------------


def test_representations_are_the_hidden_states_of_residues_in_a_padded_batch(model_dir) -> None:
    model, tokenizer = load_encoder(model_dir)
    sequences = [r.sequence[: 20 + 7 * i] for i, r in enumerate(sample_records(6, max_residues=80))]
    assert len({len(s) for s in sequences}) > 1  # the batch really is padded
    reps = encode_representations(
        model, tokenizer, sequences, layers=[0, -1, 1], include=["mean", "per_residue", "bos"], batch_size=6
    )
    assert reps.layers == (0, 2, 1)  # -1 of 2 layers is hidden_states[2]
    assert reps.lengths.tolist() == [len(s) for s in sequences] and not reps.truncated.any()
    for i, sequence in enumerate(sequences):
        with torch.no_grad():
            out = model(**tokenizer([sequence], return_tensors="pt"), output_hidden_states=True)
        torch.testing.assert_close(out.hidden_states[-1], out.last_hidden_state)
        for layer in reps.layers:
            hidden = out.hidden_states[layer][0].numpy()  # (L + 2, D): <cls> residues <eos>
            residues = hidden[1:-1]
            assert reps.per_residue[layer][i].shape == (len(sequence), 32)
            np.testing.assert_allclose(reps.per_residue[layer][i], residues, atol=1e-5)
            np.testing.assert_allclose(reps.mean[layer][i], residues.mean(0), atol=1e-5)
            np.testing.assert_allclose(reps.bos[layer][i], hidden[0], atol=1e-5)


def test_token_embeddings_are_the_last_layers_residues(model_dir) -> None:
    model, tokenizer = load_encoder(model_dir)
    sequences = ["MKTAYIAKQRQ", "MK", "ACDEFGHIKLMNPQRSTVWY"]
    rows = encode(model, tokenizer, sequences, output_value="token_embeddings", batch_size=2)
    assert [r.shape for r in rows] == [(11, 32), (2, 32), (20, 32)]
    means = encode(model, tokenizer, sequences, pooling="mean")
    np.testing.assert_allclose(np.stack([r.mean(0) for r in rows]), means, atol=1e-5)
    tensors = encode(model, tokenizer, sequences, output_value="token_embeddings", convert_to_numpy=False)
    assert isinstance(tensors[0], torch.Tensor)
    with pytest.raises(ValueError, match="output_value 'tokens'"):
        encode(model, tokenizer, sequences, output_value="tokens")


def test_representations_record_truncation(model_dir) -> None:
    model, tokenizer = load_encoder(model_dir)
    reps = encode_representations(
        model, tokenizer, ["ACDEFGHIKL" * 3, "MKT"], include=["per_residue"], max_length=12
    )
    assert reps.lengths.tolist() == [10, 3] and reps.truncated.tolist() == [True, False]
    assert [r.shape[0] for r in reps.per_residue[2]] == [10, 3]
    assert encode_representations(model, tokenizer, [], include=["per_residue"]).per_residue == {2: []}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layers": [3]}, "layer 3: the model has hidden states 0 \\(embedding output\\) to 2"),
        ({"layers": [-4]}, "layer -4"),
        ({"include": ["pooled"]}, "pooled embeddings are encode"),
        ({"include": ["cls"]}, "include \\['cls'\\]"),
        ({"residue_dtype": "int8"}, "residue_dtype 'int8'"),
    ],
)
def test_representations_refuse_what_the_model_has_not(model_dir, kwargs, message) -> None:
    model, tokenizer = load_encoder(model_dir)
    with pytest.raises(ValueError, match=message):
        encode_representations(model, tokenizer, ["MKT"], **kwargs)
