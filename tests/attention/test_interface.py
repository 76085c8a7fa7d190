"""FAVOR+ as a transformers attention implementation: tiny BERT, RoBERTa and ESM models built from
configs (no downloads), conversion with performerize, save/load, padding, redraws and the mask hooks."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import (
    AutoModel,
    BertConfig,
    BertLMHeadModel,
    BertModel,
    EsmConfig,
    EsmModel,
    PreTrainedModel,
    RobertaConfig,
    RobertaModel,
    Trainer,
    TrainingArguments,
)

import seqstruct  # noqa: F401  (registers attn_implementation="favor")
from seqstruct.attention.interface import (
    BUFFER,
    FavorRedrawCallback,
    _key_mask,
    attention_modules,
    draw_projection,
    favor_mask,
    favor_settings,
    performerize,
    redraw_projections,
)
from seqstruct.config import FavorConfig
from seqstruct.data.tokenizers import build_protein_tokenizer
from seqstruct.models.encoders import build_encoder

HEAD_DIM = 8  # hidden 32 / 4 heads in every tiny config below


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads; on a busy machine OpenMP's spin-waits make each of the
    many small QR calls behind a projection draw up to 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


_SIZES = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 40,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    # Larger than BERT's 0.02 so that attention is far from uniform and its approximation matters.
    "initializer_range": 0.1,
}


def _config(kind: str, attn: str | None = None, favor: FavorConfig | None = None, **extra):
    """A fresh tiny config (configs are shared by reference with the models built from them)."""
    sizes = {**_SIZES, **extra}
    if kind == "bert":
        config = BertConfig(vocab_size=50, **sizes)
    elif kind == "roberta":
        config = RobertaConfig(vocab_size=50, pad_token_id=1, **sizes)
    elif kind == "esm":
        config = EsmConfig(
            vocab_size=33,
            pad_token_id=1,
            mask_token_id=32,
            position_embedding_type="rotary",
            token_dropout=False,
            **sizes,
        )
    else:
        raise ValueError(kind)
    if attn is not None:
        config._attn_implementation = attn
    if favor is not None:
        config.favor = dataclasses.asdict(favor)
    return config


def _model(kind: str, attn: str | None = None, favor: FavorConfig | None = None, seed: int = 0, **extra):
    torch.manual_seed(seed)
    config = _config(kind, attn, favor, **extra)
    if kind == "bert":
        return BertModel(config, add_pooling_layer=False).eval()
    if kind == "roberta":
        return RobertaModel(config, add_pooling_layer=False).eval()
    return EsmModel(config, add_pooling_layer=False).eval()


def _ids(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    # Ids 4..29 are ordinary tokens in all three vocabularies (1 is the RoBERTa/ESM padding id).
    return torch.randint(4, 30, (batch, length), generator=torch.Generator().manual_seed(seed))


def _buffers(model: torch.nn.Module) -> list[torch.Tensor]:
    return [getattr(module, BUFFER).detach().clone() for _, module in attention_modules(model)]


def _hidden(model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).last_hidden_state


# ---------------------------------------------------------------------------------------------------
# Building and loading
# ---------------------------------------------------------------------------------------------------


def test_model_built_with_favor_has_a_projection_per_attention_module() -> None:
    model = _model("bert", "favor")
    assert model.config._attn_implementation == "favor"
    assert model.config.favor == dataclasses.asdict(FavorConfig())  # defaults filled in
    modules = list(attention_modules(model))
    assert len(modules) == 2
    for layer, module in modules:
        projection = getattr(module, BUFFER)
        assert projection.shape == (FavorConfig.num_features, HEAD_DIM)
        assert torch.equal(projection, draw_projection(FavorConfig(), HEAD_DIM, layer, 0))
        assert f"{BUFFER}" in dict(module.named_buffers())
    assert not torch.equal(*_buffers(model))  # each layer draws its own
    assert sum(BUFFER in key for key in model.state_dict()) == 2  # persistent: saved with the model
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    out = _hidden(model, _ids(2, 9), mask)
    assert out.shape == (2, 9, 32) and torch.isfinite(out).all()


@pytest.mark.parametrize("kind", ["bert", "roberta", "esm"])
def test_from_pretrained_with_favor(kind: str, tmp_path: Path) -> None:
    exact = _model(kind, "sdpa")
    exact.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path, attn_implementation="favor").eval()
    assert type(loaded) is type(exact)
    assert loaded.config._attn_implementation == "favor"
    buffers = _buffers(loaded)
    assert len(buffers) == 2
    for layer, projection in enumerate(buffers):
        # Missing from the checkpoint, so drawn like any missing weight: the step-0 draw of its layer.
        assert torch.equal(projection, draw_projection(FavorConfig(), HEAD_DIM, layer, 0))
    ids = _ids(2, 10)
    expected, got = _hidden(exact, ids), _hidden(loaded, ids)
    assert torch.isfinite(got).all()
    # m = 256 features approximate the exact model (ESM, whose keys are not pre-scaled, least closely).
    assert (got - expected).pow(2).mean() < 0.1 * expected.pow(2).mean()


def test_performerize_approaches_the_exact_model_as_m_grows() -> None:
    exact = _model("bert", "sdpa")
    ids = _ids(2, 12)
    expected = _hidden(exact, ids)

    def error(num_features: int) -> float:
        errors = []
        for seed in range(3):
            model = performerize(
                copy.deepcopy(exact), settings=FavorConfig(num_features=num_features, seed=seed)
            )
            errors.append((_hidden(model, ids) - expected).pow(2).mean().item())
        return sum(errors) / len(errors)

    coarse, fine = error(16), error(4096)
    assert fine < coarse / 20, (coarse, fine)
    # And performerize records what it did, so the model saves and reloads as a Performer.
    model = performerize(copy.deepcopy(exact), num_features=32, redraw_interval=7)
    assert model.config._attn_implementation == "favor"
    assert model.config.favor == dataclasses.asdict(FavorConfig(num_features=32, redraw_interval=7))
    assert [b.shape for b in _buffers(model)] == [(32, HEAD_DIM)] * 2
    assert exact.config._attn_implementation == "sdpa"  # the deep copy kept the original apart


def test_performerize_validates_before_switching() -> None:
    model = _model("bert", "sdpa")
    with pytest.raises(ValueError):
        performerize(model, num_features=0)
    assert model.config._attn_implementation == "sdpa"
    assert not any(hasattr(module, BUFFER) for _, module in attention_modules(model))
    # Nor may the rejected settings stay in the config: a config with `favor` reloads as FAVOR+, so a
    # saved copy of this model would fail to load.
    assert getattr(model.config, "favor", None) is None


def test_favor_settings_reject_unknown_or_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown"):
        favor_settings(SimpleNamespace(favor={"num_features": 8, "m": 8}))
    with pytest.raises(ValueError):
        favor_settings(SimpleNamespace(favor={"features": "sparse"}))
    assert favor_settings(SimpleNamespace()) == FavorConfig()


# ---------------------------------------------------------------------------------------------------
# Padding and causality through a model
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bert", "esm"])
def test_padded_batch_equals_each_sequence_alone(kind: str) -> None:
    model = _model(kind, "favor", FavorConfig(num_features=64))
    lengths = [9, 5, 2]
    ids = _ids(3, 9)
    mask = (torch.arange(9)[None, :] < torch.tensor(lengths)[:, None]).long()
    ids = ids.masked_fill(mask == 0, 1)  # the padding id
    batched = _hidden(model, ids, mask)
    for b, n in enumerate(lengths):
        alone = _hidden(model, ids[b : b + 1, :n])
        torch.testing.assert_close(batched[b, :n], alone[0], atol=1e-5, rtol=1e-5)
    # Non-vacuous: without the mask the padding would be attended to.
    unmasked = _hidden(model, ids)
    assert not torch.allclose(unmasked[1, :5], batched[1, :5], atol=1e-4)


def test_decoder_gets_causal_favor() -> None:
    config = _config("bert", "favor", FavorConfig(num_features=64, causal_chunk=3), is_decoder=True)
    torch.manual_seed(0)
    model = BertLMHeadModel(config).eval()
    ids = _ids(1, 8)
    changed = ids.clone()
    changed[0, 5:] = (changed[0, 5:] + 7) % 26 + 4
    with torch.no_grad():
        a = model(input_ids=ids).logits
        b = model(input_ids=changed).logits
    torch.testing.assert_close(a[:, :5], b[:, :5], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[:, 5:], b[:, 5:], atol=1e-3)


# ---------------------------------------------------------------------------------------------------
# Save and load
# ---------------------------------------------------------------------------------------------------


def test_saved_performer_reloads_as_one(tmp_path: Path) -> None:
    exact = _model("bert", "sdpa")
    model = performerize(copy.deepcopy(exact), settings=FavorConfig(num_features=64, seed=3)).eval()
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["favor"]["num_features"] == 64
    ids = _ids(2, 10)

    reloaded = AutoModel.from_pretrained(tmp_path).eval()  # no attn_implementation given
    assert reloaded.config._attn_implementation == "favor"
    for got, want in zip(_buffers(reloaded), _buffers(model), strict=True):
        assert torch.equal(got, want)
    assert torch.equal(_hidden(reloaded, ids), _hidden(model, ids))

    plain = AutoModel.from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    assert plain.config._attn_implementation == "sdpa"
    assert not any(hasattr(module, BUFFER) for _, module in attention_modules(plain))
    torch.testing.assert_close(_hidden(plain, ids), _hidden(exact, ids), atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------------------------------------------
# Redraws
# ---------------------------------------------------------------------------------------------------


def test_forward_passes_never_redraw() -> None:
    model = _model("esm", "favor", FavorConfig(num_features=32, redraw_interval=1))
    before = _buffers(model)
    ids = _ids(2, 7)
    _hidden(model.eval(), ids)
    model.train()
    model(input_ids=ids).last_hidden_state.sum().backward()
    model(input_ids=ids)
    for got, want in zip(_buffers(model), before, strict=True):
        assert torch.equal(got, want)


def test_redraw_is_deterministic_in_seed_layer_and_step() -> None:
    settings = FavorConfig(num_features=32, seed=5)
    a, b = _model("bert", "favor", settings), _model("bert", "favor", settings)
    initial = _buffers(a)
    assert redraw_projections(a, 10) == 2
    assert redraw_projections(b, 10) == 2
    for got, want in zip(_buffers(a), _buffers(b), strict=True):
        assert torch.equal(got, want)
    for layer, projection in enumerate(_buffers(a)):
        assert torch.equal(projection, draw_projection(settings, HEAD_DIM, layer, 10))
        assert not torch.equal(projection, initial[layer])
    redraw_projections(b, 11)
    for got, want in zip(_buffers(a), _buffers(b), strict=True):
        assert not torch.allclose(got, want)
    other_seed = _model("bert", "favor", dataclasses.replace(settings, seed=6))
    redraw_projections(other_seed, 10)
    assert not torch.allclose(_buffers(other_seed)[0], _buffers(a)[0])


def test_redraw_callback_follows_the_interval() -> None:
    settings = FavorConfig(num_features=16, redraw_interval=3)
    model = _model("bert", "favor", settings)
    callback = FavorRedrawCallback()
    current = _buffers(model)
    for step in range(1, 8):
        callback.on_step_end(None, SimpleNamespace(global_step=step), None, model=model)
        after = _buffers(model)
        if step % 3 == 0:
            assert torch.equal(after[0], draw_projection(settings, HEAD_DIM, 0, step)), step
            assert torch.equal(after[1], draw_projection(settings, HEAD_DIM, 1, step)), step
        else:
            assert all(torch.equal(x, y) for x, y in zip(after, current, strict=True)), step
        current = after

    never = _model("bert", "favor", dataclasses.replace(settings, redraw_interval=0))
    before = _buffers(never)
    callback.on_step_end(None, SimpleNamespace(global_step=3), None, model=never)
    assert all(torch.equal(x, y) for x, y in zip(_buffers(never), before, strict=True))
    callback.on_step_end(None, SimpleNamespace(global_step=3), None, model=None)  # no model: no-op
    callback.on_step_end(None, SimpleNamespace(global_step=3), None, model=_model("bert", "sdpa"))


def test_trainer_steps_redraw_and_train(tmp_path: Path) -> None:
    tokenizer = build_protein_tokenizer()
    settings = FavorConfig(num_features=16, redraw_interval=1)
    torch.manual_seed(0)
    model = build_encoder("tiny", tokenizer, "favor", favor=settings)
    assert model.config._attn_implementation == "favor"
    weights = model.esm.encoder.layer[0].attention.self.query.weight.detach().clone()
    encoded = tokenizer(["MKTAYIAKQR", "MKVLAAGIVG"] * 2, return_token_type_ids=False)
    examples = [
        {"input_ids": ids, "attention_mask": mask, "labels": ids}
        for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"], strict=True)
    ]
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=examples, callbacks=[FavorRedrawCallback()])
    result = trainer.train()
    assert trainer.state.global_step == 2
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert not torch.equal(model.esm.encoder.layer[0].attention.self.query.weight, weights)
    for layer, projection in enumerate(_buffers(model)):
        assert torch.equal(projection.cpu(), draw_projection(settings, HEAD_DIM, layer, 2))


# ---------------------------------------------------------------------------------------------------
# Mask hooks and errors
# ---------------------------------------------------------------------------------------------------


def test_favor_mask_hands_over_the_key_padding_mask() -> None:
    ones = torch.ones(2, 5, dtype=torch.long)
    assert favor_mask(2, 5, 5, attention_mask=ones) is None
    assert favor_mask(2, 5, 5, attention_mask=None) is None
    padded = ones.clone()
    padded[1, 3:] = 0
    mask = favor_mask(2, 5, 5, attention_mask=padded)
    assert mask is not None and mask.dtype == torch.bool and mask.shape == (2, 5)
    assert torch.equal(mask, padded.bool())
    window = favor_mask(2, 2, 2, kv_offset=3, attention_mask=padded)
    assert torch.equal(window, padded[:, 3:5].bool())


def test_key_mask_reads_padding_masks_and_rejects_full_ones() -> None:
    keep = torch.tensor([[True, True, True, False], [True, False, False, False]])
    assert _key_mask(None, 2, 4) is None
    assert torch.equal(_key_mask(keep, 2, 4), keep)
    assert torch.equal(_key_mask(keep.long(), 2, 4), keep)
    for dtype in (torch.float32, torch.bfloat16):
        additive = torch.zeros(2, 1, 1, 4, dtype=dtype).masked_fill(
            ~keep[:, None, None, :], torch.finfo(dtype).min
        )
        assert torch.equal(_key_mask(additive, 2, 4), keep)
    assert torch.equal(_key_mask(keep[:, None, None, :], 2, 4), keep)
    with pytest.raises(ValueError, match="key-padding"):
        _key_mask(keep[:, None, None, :].expand(2, 1, 4, 4), 2, 4)
    with pytest.raises(ValueError):
        _key_mask(keep, 2, 5)


def test_favor_without_a_projection_says_to_performerize() -> None:
    model = _model("bert", "sdpa")
    model.set_attn_implementation("favor")  # the projection is attached at construction, not here
    assert model.config._attn_implementation == "favor"
    with pytest.raises(RuntimeError, match="performerize"):
        _hidden(model, _ids(1, 5))


def test_attention_dropout_is_reported_not_silently_dropped() -> None:
    model = _model("bert", "favor", FavorConfig(num_features=16), attention_probs_dropout_prob=0.1).train()
    with pytest.warns(UserWarning, match="dropout"):
        model(input_ids=_ids(1, 5))
