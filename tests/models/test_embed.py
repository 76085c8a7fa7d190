from __future__ import annotations

import numpy as np
import pytest
import torch

from seqstruct.data.inputs import read_inputs
from seqstruct.data.tokenizers import build_protein_tokenizer
from seqstruct.models.embed import embed_file, encode, load_encoder
from seqstruct.models.encoders import build_encoder
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
        assert asked == [pooling in ("first-last", "layer-attention", "layer-attention-1q")], pooling


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


def test_read_inputs_txt_and_jsonl(tmp_path) -> None:
    txt = tmp_path / "texts.txt"
    txt.write_text("first text\n\n  second, with spaces  \nthird\n", encoding="utf-8")
    assert read_inputs(txt) == (["1", "3", "4"], ["first text", "  second, with spaces  ", "third"])
    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text('{"id": "GO:1", "text": "a"}\n\n{"id": 7, "text": "b", "extra": 1}\n', encoding="utf-8")
    assert read_inputs(jsonl) == (["GO:1", "7"], ["a", "b"])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2: not JSON"),
        ('["id", "text"]', "line 2: expected a JSON object"),
        ('{"id": "x"}', 'line 2: expected a JSON object with an "id"'),
        ('{"id": null, "text": "b"}', "got id None"),
        ('{"id": "y", "text": 3}', "got text 3"),
        ('{"id": "a", "text": "again"}', "line 2: id 'a' repeats line 1"),
    ],
)
def test_read_inputs_names_the_bad_jsonl_line(tmp_path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "text": "ok"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.jsonl, line 2") as error:
        read_inputs(path)
    assert message in str(error.value)


def test_read_inputs_rejects_unknown_suffixes(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown input type"):
        read_inputs(tmp_path / "inputs.csv")


def test_text_inputs_name_binary_data_and_read_past_a_bom(tmp_path) -> None:
    import pytest

    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufefffirst\nsecond\n".encode())
    assert read_inputs(bom) == (["1", "2"], ["first", "second"])
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\x00\x01\x02garbage\xff")
    with pytest.raises(ValueError, match=r"bin\.jsonl.*JSON lines"):
        read_inputs(binary)
