from __future__ import annotations

import numpy as np
import pytest
import torch

from seqstruct.data.tokenizers import build_protein_tokenizer
from seqstruct.embed import embed_fasta, encode, load_encoder
from seqstruct.models.encoders import build_encoder, save_model_dir
from tests.helpers import sample_records


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("model")
    tokenizer = build_protein_tokenizer()
    torch.manual_seed(0)
    save_model_dir(build_encoder("tiny", tokenizer), tokenizer, path)
    return path


@pytest.mark.parametrize("pooling", ["mean", "cls"])
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


def test_embed_fasta_writes_ids_with_vectors(model_dir, protein_fasta, tmp_path) -> None:
    out = tmp_path / "emb.npz"
    n = embed_fasta(model_dir, protein_fasta, out, pooling="cls", max_tokens=512)
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
