from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling

import seqstruct
from seqstruct.data.tokenizers import build_protein_tokenizer
from seqstruct.models.embed import encode, load_embedder, load_encoder
from seqstruct.models.encoders import build_encoder
from seqstruct.models.io import resolve_model_path, save_model_dir
from seqstruct.models.pooling import POOLINGS, LayerAttentionPooling, SeqPooling
from seqstruct.models.sentence import load_sentence_model, sentence_model
from tests.helpers import tiny_bert_config

PROTEINS = ["MKTAYIAKQRQISFVKSHFSRQ", "MK", "ACDEFGHIKLMNPQRSTVWY", "GGGG"]


@contextlib.contextmanager
def transformers_warnings() -> Iterator[list[str]]:
    """Warnings transformers logs (its logger does not propagate to the root one pytest captures)."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Collect(level=logging.WARNING)
    root = logging.getLogger("transformers")
    root.addHandler(handler)
    try:
        yield messages
    finally:
        root.removeHandler(handler)


ST_POOLING = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"


@pytest.mark.parametrize("pooling", POOLINGS)
def test_sentence_model_equals_encode_and_reloads(protein_model, tmp_path, pooling: str) -> None:
    with transformers_warnings() as warnings:
        model = sentence_model(protein_model, pooling=pooling, seed=1)
    # The MLM head left behind and the pooler drawn are expected, not reported.
    assert not [w for w in warnings if "UNEXPECTED" in w or "MISSING" in w]
    assert model[0].auto_model.config.output_hidden_states == (pooling not in ("cls", "mean", "max"))
    pool = model[1]
    # cls is sentence-transformers' own Pooling; our residue-only mean and max (<cls>/<eos> left out)
    # and the rest are seqstruct's modules.
    expected = {"cls": Pooling}.get(
        pooling, LayerAttentionPooling if pooling.startswith("layer") else SeqPooling
    )
    assert type(pool) is expected
    if pooling.startswith("layer"):
        with torch.no_grad():  # trained-looking weights: a reload rebuilding seed 1 would not match
            for parameter in pool.parameters():
                parameter.add_(0.1 * torch.randn_like(parameter))
    vectors = model.encode(PROTEINS, convert_to_numpy=True)
    assert vectors.shape == (len(PROTEINS), 32)

    # The ST pipeline and seqstruct's encode() agree (residues only: <cls>/<eos> left out).
    body, tokenizer = load_encoder(protein_model)
    np.testing.assert_allclose(encode(body, tokenizer, PROTEINS, pooling=pool), vectors, atol=1e-5)
    if pooling == "mean":  # against the hand computation over residues
        with torch.no_grad():
            hidden = body(**tokenizer(PROTEINS[:1], return_tensors="pt")).last_hidden_state[0]
        np.testing.assert_allclose(vectors[0], hidden[1:-1].mean(0).numpy(), atol=1e-5)

    st = tmp_path / "st"
    model.save(str(st))
    types = [m["type"] for m in json.loads((st / "modules.json").read_text())]
    if pooling == "cls":
        assert types[1] == ST_POOLING
        # The library's own module: plain SentenceTransformer(dir) reloads it, no flag.
        np.testing.assert_allclose(SentenceTransformer(str(st)).encode(PROTEINS), vectors, atol=1e-6)
    else:
        assert types[1] == f"seqstruct.models.pooling.{type(pool).__name__}"
        # The library imports no class outside sentence_transformers.* without trust_remote_code.
        with pytest.raises(ValueError, match="trust_remote_code=True"):
            SentenceTransformer(str(st))
    reloaded = load_sentence_model(st, device="cpu")
    assert [type(m) for m in reloaded] == [type(m) for m in model]
    np.testing.assert_allclose(reloaded.encode(PROTEINS), vectors, atol=1e-6)
    # sentence_model keeps a saved pooling of the same name (trained weights included).
    again = sentence_model(st, pooling=pooling)
    np.testing.assert_allclose(again.encode(PROTEINS), vectors, atol=1e-6)


def test_trust_remote_code_is_the_users_other_way(protein_model, tmp_path) -> None:
    model = sentence_model(protein_model, pooling="layer-attention-1q", seed=2)
    model.save(str(tmp_path))
    trusted = SentenceTransformer(str(tmp_path), trust_remote_code=True)  # the user's choice, not ours
    assert type(trusted[1]) is LayerAttentionPooling  # seqstruct's installed class
    np.testing.assert_allclose(trusted.encode(PROTEINS), model.encode(PROTEINS), atol=1e-6)


def test_the_trainers_checkpoint_reload_takes_our_modules(protein_model, tmp_path) -> None:
    """sentence-transformers' trainer reloads a checkpoint with the in-memory model's module classes
    (its own path, no trust_remote_code): resuming works for seqstruct's modules."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    trained = sentence_model(protein_model, pooling="layer-attention", seed=0)
    with torch.no_grad():
        trained[1].output.bias.fill_(0.25)
    trained.save(str(tmp_path / "checkpoint"))
    fresh = sentence_model(protein_model, pooling="layer-attention", seed=0)
    trainer = SentenceTransformerTrainer(
        model=fresh,
        args=SentenceTransformerTrainingArguments(output_dir=str(tmp_path / "run"), report_to="none"),
        train_dataset=Dataset.from_dict({"anchor": ["MK"], "positive": ["MKT"]}),
        loss=MultipleNegativesRankingLoss(fresh),
    )
    trainer._load_from_checkpoint(str(tmp_path / "checkpoint"))
    assert torch.all(fresh[1].output.bias == 0.25)
    np.testing.assert_allclose(fresh.encode(PROTEINS), trained.encode(PROTEINS), atol=1e-6)


@pytest.mark.parametrize(
    "foreign",
    ["tests_no_such_package.Evil", "sentence_transformers.util.fullname"],
)
def test_load_sentence_model_refuses_a_foreign_module_type(protein_model, tmp_path, foreign: str) -> None:
    sentence_model(protein_model, pooling="mean").save(str(tmp_path))
    file = tmp_path / "modules.json"
    modules = json.loads(file.read_text())
    modules[1]["type"] = foreign
    file.write_text(json.dumps(modules))
    for load in (load_sentence_model, sentence_model):
        with pytest.raises(ValueError, match="neither sentence-transformers'") as error:
            load(tmp_path)
        assert str(file) in str(error.value) and repr(foreign) in str(error.value)
    assert "tests_no_such_package" not in sys.modules


def test_load_sentence_model_refuses_a_path_outside_the_directory(protein_model, tmp_path) -> None:
    sentence_model(protein_model, pooling="mean").save(str(tmp_path))
    file = tmp_path / "modules.json"
    modules = json.loads(file.read_text())
    modules[1]["path"] = "../elsewhere"
    file.write_text(json.dumps(modules))
    with pytest.raises(ValueError, match="leaves the model directory"):
        load_sentence_model(tmp_path)


def test_importing_seqstruct_does_not_import_sentence_transformers() -> None:
    script = (
        "import sys\n"
        "import seqstruct\n"
        "assert 'sentence_transformers' not in sys.modules, 'imported at import seqstruct'\n"
        "assert callable(seqstruct.load_sentence_model)\n"
    )
    src = str(Path(seqstruct.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_saved_pooling_is_kept_unless_another_is_named(protein_model, tmp_path) -> None:
    model = sentence_model(protein_model, pooling="layer-attention", seed=0)
    with torch.no_grad():
        model[1].output.bias.fill_(0.5)
    model.save(str(tmp_path / "st"))
    kept = sentence_model(tmp_path / "st")
    assert torch.all(kept[1].output.bias == 0.5)
    replaced = sentence_model(tmp_path / "st", pooling="mean")
    assert isinstance(replaced[1], SeqPooling) and not replaced[1].include_special_tokens
    assert not replaced[0].auto_model.config.output_hidden_states
    plain = load_encoder(protein_model)
    np.testing.assert_allclose(replaced.encode(PROTEINS), encode(*plain, PROTEINS, pooling="mean"), atol=1e-5)


def test_favor_encoder_loads_as_favor(tmp_path) -> None:
    tokenizer = build_protein_tokenizer()
    torch.manual_seed(0)
    save_model_dir(
        build_encoder("tiny", tokenizer, attn_implementation="favor"), tokenizer, tmp_path / "favor"
    )
    model = sentence_model(tmp_path / "favor", pooling="first-last")
    assert model[0].auto_model.config._attn_implementation == "favor"
    vectors = model.encode(PROTEINS)
    model.save(str(tmp_path / "st"))
    reloaded = load_sentence_model(tmp_path / "st")
    assert reloaded[0].auto_model.config._attn_implementation == "favor"
    np.testing.assert_allclose(reloaded.encode(PROTEINS), vectors, atol=1e-5)
    exact = sentence_model(tmp_path / "favor", pooling="mean", attn_implementation="sdpa")
    assert exact[0].auto_model.config._attn_implementation == "sdpa"


TEXTS = [
    "The cell membrane.",
    "A protein kinase that phosphorylates serine residues in response to DNA damage.",
    "x",
]


def test_minilm_mean_equals_sentence_transformers(tmp_path) -> None:
    reference = SentenceTransformer(str(resolve_model_path("minilm"))).encode(TEXTS)
    embedder = load_embedder("minilm")  # what `seqstruct embed minilm` runs
    assert (embedder.pooling, embedder.max_length) == ("mean", 256)
    np.testing.assert_allclose(embedder.encode(TEXTS), reference, atol=1e-6)
    # Another pooling in MiniLM's convention ([CLS] and [SEP] pooled) is sentence-transformers' own
    # Pooling, then MiniLM's Normalize: plain SentenceTransformer(dir) reloads it.
    ours = sentence_model("minilm", pooling="max")
    assert [type(m).__name__ for m in ours] == ["Transformer", "Pooling", "Normalize"]
    assert ours[1].pooling_mode == "max"
    vectors = ours.encode(TEXTS)
    # The same vectors as seqstruct's max over every attended token, normalised.
    body, tokenizer = load_encoder(resolve_model_path("minilm"))
    mine = SeqPooling("max", include_special_tokens=True, special_token_ids=[101, 102])
    expected = encode(body, tokenizer, TEXTS, pooling=mine, normalize_embeddings=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert np.abs(vectors - reference).max() > 0.1  # max, not MiniLM's mean
    ours.save(str(tmp_path / "st"))
    assert "seqstruct" not in (tmp_path / "st" / "modules.json").read_text()
    np.testing.assert_allclose(SentenceTransformer(str(tmp_path / "st")).encode(TEXTS), vectors, atol=1e-6)
    # And a replacement for it keeps the convention.
    again = sentence_model(tmp_path / "st", pooling="mean")
    np.testing.assert_allclose(again.encode(TEXTS), reference, atol=1e-6)


def test_a_text_mlm_checkpoint_loads_quietly(tmp_path) -> None:
    from transformers import AutoTokenizer, BertForMaskedLM

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    config = tiny_bert_config(tokenizer)
    save_model_dir(BertForMaskedLM(config), tokenizer, tmp_path)
    with transformers_warnings() as warnings:
        first = sentence_model(tmp_path, pooling="cls", seed=4)
    assert not [w for w in warnings if "UNEXPECTED" in w or "MISSING" in w]
    second = sentence_model(tmp_path, pooling="cls", seed=4)
    pooler = "pooler.dense.weight"  # drawn (absent from an MLM checkpoint) from the seed
    assert torch.equal(first[0].auto_model.state_dict()[pooler], second[0].auto_model.state_dict()[pooler])
    body, tok = load_encoder(tmp_path)
    np.testing.assert_allclose(first.encode(TEXTS), encode(body, tok, TEXTS, pooling="cls"), atol=1e-5)


@pytest.mark.parametrize("pooling", ["layer-attention", "layer-attention-1q"])
def test_untrained_layer_attention_is_the_base_models_own_pooling(protein_model, tmp_path, pooling) -> None:
    """The residual layer-attention starts as the source's pooling: mean for a plain encoder directory,
    the saved pooling of a sentence-transformers one (here cls)."""
    mean = sentence_model(protein_model, pooling="mean").encode(PROTEINS)
    ours = sentence_model(protein_model, pooling=pooling, seed=3)
    assert ours[1].base == "mean"
    np.testing.assert_allclose(ours.encode(PROTEINS), mean, rtol=0, atol=1e-6)
    cls = sentence_model(protein_model, pooling="cls")
    cls.save(str(tmp_path / "cls"))
    over_cls = sentence_model(tmp_path / "cls", pooling=pooling, seed=3)
    assert over_cls[1].base == "cls"
    np.testing.assert_allclose(over_cls.encode(PROTEINS), cls.encode(PROTEINS), rtol=0, atol=1e-6)
    paper = sentence_model(protein_model, pooling=pooling.replace("attention", "attention-paper"), seed=3)
    assert np.abs(paper.encode(PROTEINS) - mean).max() > 0.1  # the paper's form is not mean pooling


def test_untrained_layer_attention_is_minilms_mean_pooling() -> None:
    reference = SentenceTransformer(str(resolve_model_path("minilm"))).encode(TEXTS)
    model = sentence_model("minilm", pooling="layer-attention", seed=0)
    assert [type(m).__name__ for m in model] == ["Transformer", "LayerAttentionPooling", "Normalize"]
    assert (model[1].base, model[1].include_special_tokens) == ("mean", True)  # MiniLM's Pooling
    np.testing.assert_allclose(model.encode(TEXTS), reference, rtol=0, atol=1e-6)
    # Before Normalize too: the pooled vectors themselves, not only their directions.
    features = model.tokenize(TEXTS)
    with torch.no_grad():
        pooled = model[1](model[0](dict(features)))["sentence_embedding"]
        plain = SentenceTransformer(str(resolve_model_path("minilm")))
        expected = plain[1](plain[0](dict(plain.tokenize(TEXTS))))["sentence_embedding"]
    torch.testing.assert_close(pooled, expected, rtol=0, atol=1e-6)
